"""Workload 1: end-to-end batch scoring, `bilstm-run` vs a straightforward PyTorch script.

Both sides are separate processes started the same way, scoring the same text file with the
same weights, tokenizer, batch size (64), chunking (4096 lines sorted by length) and thread
count, interleaved A, B, A, B. Reported per file: items/s over the whole process (start to
exit: what a batch job sees) and over scoring alone (after the model is loaded: the summary
line each side prints), their medians and the ratio runtime / PyTorch. The outputs of the last
round are compared line by line (same labels, max probability difference).

    python -m benchmarks.throughput --threads 2
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "throughput"
TARGET = 3.0
SUMMARY = re.compile(r"(\d+) (?:lines|records), \d+ errors, ([\d.]+) s")


def scoring_seconds(stderr: str) -> float | None:
    """Seconds after loading, from the summary line both sides print."""
    found = SUMMARY.findall(stderr)
    return float(found[-1][1]) if found else None


def compare_outputs(a: Path, b: Path) -> dict[str, Any]:
    """Label agreement and max probability difference of two JSONL outputs."""
    same = total = 0
    max_diff = 0.0
    with a.open(encoding="utf-8") as fa, b.open(encoding="utf-8") as fb:
        for la, lb in zip(fa, fb, strict=True):
            ra, rb = json.loads(la), json.loads(lb)
            total += 1
            same += ra.get("label") == rb.get("label")
            pa, pb = ra.get("probabilities") or {}, rb.get("probabilities") or {}
            for key in pa:
                max_diff = max(max_diff, abs(pa[key] - pb.get(key, 0.0)))
    return {"lines": total, "same_label": same, "max_prob_diff": max_diff}


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    c.add_asset_options(p)
    p.add_argument("--big-lines", type=int, default=100_000, help="size of the large file")
    p.add_argument("--rounds", type=int, default=5, help="rounds on the dev file")
    p.add_argument("--big-rounds", type=int, default=3, help="rounds on the large file")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    if args.smoke:
        args.big_lines, args.rounds, args.big_rounds = min(args.big_lines, 150), 1, 1
    machine = c.machine_info(args.wait_quiet)
    assets = c.resolve_assets(args)
    texts = [text for _, text in c.read_tsv(assets.data)]
    work = Path(tempfile.mkdtemp(prefix="bilstm-bench-"))
    files = {"dev": (c.write_lines(texts, work / "dev.txt"), args.rounds)}
    if args.big_lines:
        files["big"] = (c.write_lines(texts, work / "big.txt", args.big_lines), args.big_rounds)
    if args.smoke:
        files = {"big": files["big"]} if args.big_lines else files

    n, bs = str(args.threads), str(args.batch_size)
    results: dict[str, Any] = {}
    for label, (path, rounds) in files.items():
        out_a, out_b = work / f"{label}.runtime.jsonl", work / f"{label}.torch.jsonl"
        cmd_a = [
            c.bin_path("bilstm-run"),
            str(assets.model),
            str(path),
            "--threads",
            n,
            "--batch-size",
            bs,
            "--device",
            "cpu",
            "--output",
            str(out_a),
        ]
        cmd_b = [
            sys.executable,
            str(c.TORCH_BASELINE),
            str(assets.checkpoint),
            str(path),
            "--threads",
            n,
            "--batch-size",
            bs,
            "--output",
            str(out_b),
        ]
        runs: dict[str, list[c.ProcessRun]] = {"runtime": [], "torch": []}

        def side(name: str, cmd: list[str], runs: dict[str, list[c.ProcessRun]] = runs) -> float:
            run = c.check(c.run_process(cmd), cmd)
            runs[name].append(run)
            return run.wall_s

        c.interleave(
            {
                "runtime": lambda cmd=cmd_a: side("runtime", cmd),
                "torch": lambda cmd=cmd_b: side("torch", cmd),
            },
            rounds,
            self_timed=True,
        )
        lines = len(path.read_text(encoding="utf-8").splitlines())
        entry: dict[str, Any] = {
            "lines": lines,
            "rounds": rounds,
            "commands": {"runtime": cmd_a, "torch": cmd_b},
        }
        for name, rs in runs.items():
            walls = [r.wall_s for r in rs]
            scoring = [s for s in (scoring_seconds(r.stderr) for r in rs) if s]
            entry[name] = {
                "wall_s": c.summary(walls),
                "items_per_s_e2e": lines / c.median(walls),
                "scoring_s": c.summary(scoring) if scoring else None,
                "items_per_s_scoring": lines / c.median(scoring) if scoring else None,
                "max_rss_mib": max(r.max_rss_mib for r in rs),
            }
        entry["ratio_e2e"] = c.ratio(
            entry["runtime"]["items_per_s_e2e"], entry["torch"]["items_per_s_e2e"]
        )
        entry["ratio_scoring"] = c.ratio(
            entry["runtime"]["items_per_s_scoring"], entry["torch"]["items_per_s_scoring"]
        )
        entry["outputs"] = compare_outputs(out_a, out_b)
        results[label] = entry
        print(
            f"{label}: {lines} lines, e2e ratio {entry['ratio_e2e']:.2f}x, scoring ratio "
            f"{entry['ratio_scoring'] or float('nan'):.2f}x",
            file=sys.stderr,
        )
    c.save(
        NAME,
        args,
        argv,
        {"target_ratio": TARGET, "batch_size": args.batch_size, "files": results},
        machine,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
