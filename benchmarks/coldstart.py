"""Workload 3: cold start, `bilstm-run MODEL one_line.txt` vs the PyTorch equivalent.

Wall time from process start to exit (output written) of the runtime CLI on a one-line file,
against `benchmarks/torch_baseline.py` (import torch, load a checkpoint folder holding the
same weights, predict, print) on the same file, interleaved A, B, A, B after one discarded
run of each (warm page cache: the "cold" is the process, not the disk). To explain the
number, the same is measured for bare `python -c pass`, for importing each big dependency,
and for the Python API doing the same work without the CLI; `python -X importtime` sums the
CLI's import time by package.

    python -m benchmarks.coldstart --threads 2
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "coldstart"
TARGET_S = 0.25  # issue #16: whole-process cold start
TARGET_RATIO = None
IMPORTS = {
    "python -c pass": "pass",
    "import numpy": "import numpy",
    "import onnxruntime": "import onnxruntime",
    "import typer": "import typer",
    "import bilstm.runtime.cli": "import bilstm.runtime.cli",
    "import torch": "import torch",
}
API_ONE_LINE = (
    "import sys; from bilstm.runtime import BiLSTM; "
    "print(BiLSTM.load(sys.argv[1], device='cpu', threads=int(sys.argv[2]))"
    ".predict([open(sys.argv[3]).readline()])[0].label)"
)
IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def slowest_imports(top: int = 12) -> list[dict[str, Any]]:
    """Import time of the CLI by top-level package (sum of self times), slowest first."""
    run = c.run_process([sys.executable, "-X", "importtime", "-c", "import bilstm.runtime.cli"])
    by_package: dict[str, int] = {}
    for self_us, _cum, _indent, name in IMPORTTIME.findall(run.stderr):
        package = name.split(".")[0]
        if package == "bilstm":
            package = ".".join(name.split(".")[:3])
        by_package[package] = by_package.get(package, 0) + int(self_us)
    rows = [{"module": k, "self_ms": v / 1e3} for k, v in by_package.items()]
    return sorted(rows, key=lambda r: -r["self_ms"])[:top]


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    c.add_asset_options(p)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--no-breakdown", action="store_true", help="skip the import measurements")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.no_breakdown = 1, True
    machine = c.machine_info(args.wait_quiet)
    assets = c.resolve_assets(args)
    # `bilstm-run sentiment ...` as a user types it when the model is the built-in one.
    model_arg = args.model or (c.SHIPPED_MODEL if not args.smoke else str(assets.model))
    text = next((t for _, t in c.read_tsv(assets.data)), "A gorgeous, witty movie.")
    one = c.write_lines([text], Path(tempfile.mkdtemp(prefix="bilstm-bench-")) / "one_line.txt")
    n = str(args.threads)
    cmds = {
        "runtime": [c.bin_path("bilstm-run"), model_arg, str(one), "--threads", n, "--quiet"],
        "torch": [
            sys.executable,
            str(c.TORCH_BASELINE),
            str(assets.checkpoint),
            str(one),
            "--threads",
            n,
        ],
    }
    for cmd in cmds.values() if not args.smoke else ():  # warm the page cache; fail early
        c.check(c.run_process(cmd), cmd)
    rss: dict[str, float] = {}

    def side(name: str) -> float:
        run = c.check(c.run_process(cmds[name]), cmds[name])
        rss[name] = max(rss.get(name, 0.0), run.max_rss_mib)
        return run.wall_s

    times = c.interleave(
        {name: (lambda name=name: side(name)) for name in cmds}, args.rounds, self_timed=True
    )
    stats = {name: c.summary(xs) for name, xs in times.items()}
    result: dict[str, Any] = {
        "target_s": TARGET_S,
        "target_ratio": TARGET_RATIO,
        "commands": cmds,
        "wall_s": stats,
        "max_rss_mib": rss,
        "ratio": c.ratio(stats["runtime"]["median"], stats["torch"]["median"]),
    }
    if not args.no_breakdown:
        imports = {label: [sys.executable, "-c", code] for label, code in IMPORTS.items()}
        imports["python API: BiLSTM.load + predict, no CLI"] = [
            sys.executable,
            "-c",
            API_ONE_LINE,
            model_arg,
            n,
            str(one),
        ]
        for cmd in imports.values():
            c.check(c.run_process(cmd), cmd)
        parts = c.interleave(
            {label: (lambda cmd=cmd: c.run_process(cmd).wall_s) for label, cmd in imports.items()},
            max(3, args.rounds // 2),
            self_timed=True,
        )
        result["breakdown_wall_s"] = {label: c.summary(xs) for label, xs in parts.items()}
        result["slowest_imports"] = slowest_imports()
    print(
        f"cold start: runtime {stats['runtime']['median']:.3f} s, torch "
        f"{stats['torch']['median']:.3f} s, ratio {result['ratio']:.2f}",
        file=sys.stderr,
    )
    c.save(NAME, args, argv, result, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
