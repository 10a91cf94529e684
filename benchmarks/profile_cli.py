"""Where `bilstm-run`'s time goes: a py-spy profile of one whole run, summarised by stage.

    python -m benchmarks.profile_cli [--model sentiment] [--lines 50000] [--threads 2]

Runs `py-spy record --format raw` on `bilstm-run MODEL FILE --threads N --output OUT` (FILE:
the dev texts repeated to `--lines` lines) and sums the samples of the main thread by stage:
a sample counts for the first stage (in the order below) that has a frame on its stack, so
the shares add up to 100%. Also the slowest functions by own (leaf) samples. Needs py-spy
(`pip install py-spy`) and permission to trace a child process.

Stages: `session.run` (ONNX Runtime), start-up (imports and loading the model before the
first line), reading input, tokenising and ids, batching/padding, records and output, the
rest of the task class's code (`runtime/tasks/`), other.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "profile_cli"
# (stage, regex on one frame "function (file:line)"), first match on a stack wins.
STAGES = [
    ("session.run", re.compile(r"(^|\.)run \(.*onnxruntime_inference_collection\.py")),
    ("start-up: imports", re.compile(r"_find_and_load|_call_with_frames_removed")),
    (
        "start-up: loading the model",
        re.compile(r"(^|\.)load \(.*runtime/model\.py|runtime/session\.py|_create_inference"),
    ),
    ("reading input", re.compile(r"core/reader\.py")),
    ("tokenising and ids", re.compile(r"core/tokenizer\.py|core/preprocess\.py|core/vocab\.py")),
    ("batching and padding", re.compile(r"core/batching\.py")),
    ("records and output", re.compile(r"runtime/output\.py|runtime/records\.py|json/")),
    ("other task code (runtime/tasks/)", re.compile(r"runtime/tasks/")),
]


def parse_raw(text: str) -> list[tuple[list[str], int]]:
    """(frames root first, samples) per line of py-spy's raw (collapsed) output."""
    stacks = []
    for line in text.splitlines():
        head, _, count = line.rpartition(" ")
        if not head or not count.isdigit():
            continue
        frames = head.split(";")
        stacks.append((frames, int(count)))
    return stacks


def summarise(stacks: list[tuple[list[str], int]], top: int = 15) -> dict[str, Any]:
    """Shares by stage and the top functions by own samples."""
    by_stage: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in stacks:
        body = frames[1:] if frames and frames[0].startswith(("thread", "process")) else frames
        total += count
        stage = next(
            (name for name, rx in STAGES if any(rx.search(f) for f in body)),
            "other",
        )
        by_stage[stage] += count
        if body:
            leaf[re.sub(r"/[^ ]*/(site-packages|bilstm)/", r"\1/", body[-1])] += count
    return {
        "samples": total,
        "stages": {k: v / total for k, v in by_stage.most_common()} if total else {},
        "top_functions": [
            {"function": k, "share": v / total} for k, v in leaf.most_common(top) if total
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, (__doc__ or "").splitlines()[0])
    c.add_asset_options(p)
    p.add_argument("--lines", type=int, default=50_000)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--extra", default="", help="more bilstm-run options, space-separated")
    args = p.parse_args(argv)
    if args.smoke:
        args.lines, args.rate = 200, 100
    pyspy = shutil.which("py-spy") or c.bin_path("py-spy")
    if not Path(pyspy).exists() and shutil.which(pyspy) is None:
        sys.exit("error: py-spy is not installed (pip install py-spy)")
    machine = c.machine_info(args.wait_quiet)
    model = args.model or c.SHIPPED_MODEL
    data = args.data or c.SHARED_DEV
    texts = [t for _, t in c.read_tsv(Path(data))]
    work = Path(tempfile.mkdtemp(prefix="bilstm-bench-"))
    source = c.write_lines(texts, work / "big.txt", args.lines)
    run = [c.bin_path("bilstm-run"), str(model), str(source), "--threads", str(args.threads)]
    if args.batch_size:
        run += ["--batch-size", str(args.batch_size)]
    run += ["--device", "cpu", "--output", str(work / "out.jsonl"), *args.extra.split()]
    raw = work / "profile.txt"
    cmd = [pyspy, "record", "--format", "raw", "--rate", str(args.rate), "-o", str(raw), "--"]
    done = subprocess.run([*cmd, *run], capture_output=True, text=True, cwd=c.REPO)
    if done.returncode != 0 or not raw.exists():
        sys.exit(f"error: py-spy failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result = summarise(parse_raw(raw.read_text(encoding="utf-8")))
    result.update({"lines": args.lines, "model": str(model), "profiled_command": run})
    print(
        "stages: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in result["stages"].items()),
        file=sys.stderr,
    )
    c.save(NAME, args, argv, result, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
