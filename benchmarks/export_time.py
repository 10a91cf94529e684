"""Export time (issue 4: "export of a 2-layer model takes seconds"): how many?

Times `export_checkpoint` (graph, checks, parity against PyTorch, metadata, atomic write) in
this process, with and without the parity check, for the shipped 1-layer checkpoint and for
a 2-layer model of the same sizes (embedding 128, hidden 128 per direction, trained one epoch
on the data given here so that its vocabulary is realistic), and the wall time of the whole
`bilstm export CHECKPOINT OUT.onnx` command (Python start and torch import included).

    python -m benchmarks.export_time --threads 2
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "export_time"


def layers(checkpoint: Path) -> int:
    """Recurrent layers of a checkpoint (from its config.json)."""
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    return int(config["model"]["num_layers"])


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    c.add_asset_options(p)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds = 1
    machine = c.machine_info(args.wait_quiet)
    assets = c.resolve_assets(args)

    import torch

    from bilstm.export import export_checkpoint

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bilstm-bench-"))
    given = [assets.checkpoint]
    if not args.smoke:  # a 2-layer model of the shipped sizes, trained one epoch
        two = work / "two_layers"
        c.train_cli(
            [
                "classify",
                "--data",
                str(assets.data),
                "--dev",
                str(assets.data),
                "--out",
                str(two),
                "--epochs",
                "1",
                "--layers",
                "2",
                "--embedding-dim",
                "128",
                "--hidden-size",
                "128",
                "--threads",
                str(args.threads),
            ]
        )
        given.append(two)
    checkpoints = {f"{layers(ckpt)}_layer{'s' if layers(ckpt) > 1 else ''}": ckpt for ckpt in given}
    cases = {}
    for name, ckpt in checkpoints.items():
        for verify in (True, False):
            out = work / f"{name}_{verify}.onnx"

            def export(ckpt: Path = ckpt, out: Path = out, verify: bool = verify) -> float:
                start = time.perf_counter()
                export_checkpoint(ckpt, out, verify=verify)
                return time.perf_counter() - start

            cases[f"{name}{'' if verify else '_no_verify'}"] = export
    times = c.interleave(cases, args.rounds, self_timed=True)
    result: dict[str, Any] = {
        "in_process_s": {name: c.summary(xs) for name, xs in times.items()},
        "sizes_bytes": {name: (work / f"{name}_True.onnx").stat().st_size for name in checkpoints},
    }
    if "2_layers" in checkpoints and not args.smoke:
        out = work / "cli.onnx"
        cmd = [c.bin_path("bilstm"), "export", str(checkpoints["2_layers"]), str(out), "--force"]
        walls = [c.check(c.run_process(cmd), cmd).wall_s for _ in range(args.rounds)]
        result["cli_2_layers_wall_s"] = c.summary(walls)
        result["cli_command"] = cmd
    print(
        "export: "
        + ", ".join(f"{k} {v['median']:.2f} s" for k, v in result["in_process_s"].items()),
        file=sys.stderr,
    )
    c.save(NAME, args, argv, result, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
