"""Workload 3: cold start, `bilstm-run MODEL one_line.txt` vs the PyTorch equivalent.

Wall time from process start to exit (output written) of the runtime CLI on a one-line file,
against `benchmarks/torch_baseline.py` (import torch, load a checkpoint folder holding the
same weights, predict, print) on the same file, interleaved A, B, A, B after one discarded
run of each (warm page cache: the "cold" is the process, not the disk). Each run's CPU time
(user + system, from the child's rusage) is recorded next to its wall time: on a shared
machine it moves much less than wall time does.

Bytecode: a pip-installed package is byte-compiled when it is installed, so its modules load
from `.pyc` files. A development checkout run with PYTHONDONTWRITEBYTECODE=1 (as the project's
machines are) may instead compile bilstm's modules from source at every start. By default
(`--bytecode compiled`) the script therefore byte-compiles the imported `bilstm.runtime` and
`bilstm.core` folders first (`compileall`, what pip does) and measures what an installed
user gets; `--bytecode source` measures a copy of those folders without bytecode, put first
on PYTHONPATH with bytecode writing off, i.e. the price of compiling from source. Neither
removes the editable install's import hook (`__editable__...finder`), which a pip-installed
user does not load either; benchmarks/findings/coldstart.md measures that separately.

To explain the number, the same is measured for a bare `python -c pass`, for importing each
big dependency, for the Python API doing the same work without the CLI, and for the floor of
any ONNX Runtime program on this model file (import numpy and onnxruntime, open the session,
one run, print); `python -X importtime` of the one-line run sums import time by package.
`bilstm-run` sets OPENBLAS_NUM_THREADS=1 before numpy is imported (unless it is set): the
rows named with it run so too, the others in the environment as it is (recorded).
The `bilstm-run` measured is the console script installed beside this Python, with the
entry point pyproject.toml gave it when it was installed; a breakdown row runs the same
command line through `bilstm.runtime.cli:console_main`, the entry point that leaves a
finished run without the interpreter's teardown.

    python -m benchmarks.coldstart --threads 1
"""

from __future__ import annotations

import compileall
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
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
    "import numpy, onnxruntime; OPENBLAS_NUM_THREADS=1": "import numpy, onnxruntime",
    "import typer": "import typer",
    "import bilstm.runtime.cli": "import bilstm.runtime.cli",
    "import torch": "import torch",
}
# `bilstm-run` sets OPENBLAS_NUM_THREADS=1 before numpy is imported (bilstm.runtime.cli);
# the rows marked so run with it, to compare like with like.
ONE_BLAS_THREAD = "OPENBLAS_NUM_THREADS=1"
FLOOR = f"ONNX Runtime floor: import, session, one run, print; {ONE_BLAS_THREAD}"
API_ONE_LINE = (
    "import sys; from bilstm.runtime import BiLSTM; "
    "print(BiLSTM.load(sys.argv[1], device='cpu', threads=int(sys.argv[2]))"
    ".predict([open(sys.argv[3]).readline()])[0].label)"
)
# The least any Python program running this model file with ONNX Runtime does: no checks,
# no tokenizer beyond whitespace, no records. The gap to `bilstm-run` is the runtime's own.
ORT_FLOOR = (
    "import sys, json; import numpy as np, onnxruntime as ort\n"
    "o = ort.SessionOptions(); o.intra_op_num_threads = int(sys.argv[2])\n"
    "o.inter_op_num_threads = 1\n"
    "s = ort.InferenceSession(sys.argv[1], sess_options=o, providers=['CPUExecutionProvider'])\n"
    "meta = json.loads(s.get_modelmeta().custom_metadata_map['bilstm'])\n"
    "index = {w: i for i, w in enumerate(meta['vocabulary'])}\n"
    "ids = [index.get(w, 1) for w in open(sys.argv[3]).readline().lower().split()] or [1]\n"
    "feeds = {'input_ids': np.array([ids], np.int64), 'lengths': np.array([len(ids)], np.int64)}\n"
    "print(s.run(None, feeds)[-1][0].tolist())\n"
)
# The one-line run itself, in this interpreter (for -X importtime).
RUN_ONE_LINE = (
    "import sys; sys.argv = ['bilstm-run', *sys.argv[1:]]; "
    "from bilstm.runtime.cli import run_main; run_main()"
)
# The same through `console_main`, the console script's entry point (no interpreter teardown
# after a finished run): a script installed from an older pyproject.toml still calls
# `run_main`, so this row shows what the current entry point gives.
CONSOLE = "bilstm-run through bilstm.runtime.cli:console_main"
CONSOLE_ONE_LINE = RUN_ONE_LINE.replace("run_main", "console_main")
IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def package_dirs() -> list[Path]:
    """The folders of the `bilstm.runtime` and `bilstm.core` this interpreter imports."""
    import bilstm.core
    import bilstm.runtime

    return [Path(bilstm.runtime.__file__).parent, Path(bilstm.core.__file__).parent]


def byte_compile() -> None:
    """Write the `.pyc` files pip writes on install (quietly; existing fresh ones are kept)."""
    for folder in package_dirs():
        if not compileall.compile_dir(str(folder), quiet=1):
            raise RuntimeError(f"compileall failed in {folder}")


def source_only_env(tmp: Path) -> dict[str, str]:
    """An environment whose `bilstm.runtime`/`bilstm.core` are copies without bytecode, put
    first on PYTHONPATH, with bytecode writing off: every start compiles them from source."""
    for folder in package_dirs():
        target = tmp / "bilstm" / folder.name
        shutil.copytree(
            folder, target, ignore=shutil.ignore_patterns("__pycache__", "assets", "*.pyc")
        )
        if (folder / "assets").is_dir():  # the built-in models, found next to the module
            (target / "assets").symlink_to(folder / "assets", target_is_directory=True)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp), env.get("PYTHONPATH", "")]))
    probe = [sys.executable, "-c", "import bilstm.runtime as r; print(r.__file__)"]
    where = subprocess.run(probe, env=env, capture_output=True, text=True, check=True)
    if not where.stdout.startswith(str(tmp)):
        raise RuntimeError(f"the source-only copy is not the one imported: {where.stdout}")
    return env


def timed(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[c.ProcessRun, float]:
    """One run of `cmd`, and the CPU seconds (user + system) it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = c.check(c.run_process(cmd, env=env), cmd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return run, cpu


def slowest_imports(run_args: Sequence[str], env: dict[str, str] | None, top: int = 14) -> Any:
    """Import time of the one-line run by top-level package (sum of self times), slowest
    first; bilstm's own modules by name."""
    cmd = [sys.executable, "-X", "importtime", "-c", RUN_ONE_LINE, *run_args]
    run = c.check(c.run_process(cmd, env=env), cmd)
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
    p.add_argument(
        "--bytecode",
        choices=("compiled", "source"),
        default="compiled",
        help="compiled: byte-compile bilstm first, as pip does (default); source: run a copy "
        "without bytecode (what an uncompiled checkout pays)",
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.no_breakdown = 1, True
    machine = c.machine_info(args.wait_quiet)
    assets = c.resolve_assets(args)
    # `bilstm-run sentiment ...` as a user types it when the model is the built-in one.
    model_arg = args.model or (c.SHIPPED_MODEL if not args.smoke else str(assets.model))
    text = next((t for _, t in c.read_tsv(assets.data)), "A gorgeous, witty movie.")
    tmp = Path(tempfile.mkdtemp(prefix="bilstm-bench-"))
    one = c.write_lines([text], tmp / "one_line.txt")
    n = str(args.threads)
    env: dict[str, str] | None = None
    if args.bytecode == "compiled":
        byte_compile()
    else:
        env = source_only_env(tmp / "source-only")
    run_args = [model_arg, str(one), "--threads", n, "--quiet"]
    cmds = {
        "runtime": [c.bin_path("bilstm-run"), *run_args],
        "torch": [
            sys.executable,
            str(c.TORCH_BASELINE),
            str(assets.checkpoint),
            str(one),
            "--threads",
            n,
        ],
    }
    envs = {"runtime": env, "torch": None}
    for name, cmd in cmds.items() if not args.smoke else ():  # warm the page cache; fail early
        timed(cmd, envs[name])
    rss: dict[str, float] = {}
    cpu: dict[str, list[float]] = {name: [] for name in cmds}

    def side(name: str) -> float:
        run, seconds = timed(cmds[name], envs[name])
        rss[name] = max(rss.get(name, 0.0), run.max_rss_mib)
        cpu[name].append(seconds)
        return run.wall_s

    times = c.interleave(
        {name: (lambda name=name: side(name)) for name in cmds}, args.rounds, self_timed=True
    )
    stats = {name: c.summary(xs) for name, xs in times.items()}
    result: dict[str, Any] = {
        "target_s": TARGET_S,
        "target_ratio": TARGET_RATIO,
        "bytecode": args.bytecode,
        "environment": {
            k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "PYTHONDONTWRITEBYTECODE")
        },
        "commands": cmds,
        "wall_s": stats,
        "cpu_s": {name: c.summary(xs) for name, xs in cpu.items()},
        "max_rss_mib": rss,
        "ratio": c.ratio(stats["runtime"]["median"], stats["torch"]["median"]),
    }
    if not args.no_breakdown:
        ours = {"import bilstm.runtime.cli", "python API: BiLSTM.load + predict, no CLI", CONSOLE}
        imports = {label: [sys.executable, "-c", code] for label, code in IMPORTS.items()}
        imports[CONSOLE] = [sys.executable, "-c", CONSOLE_ONE_LINE, *run_args]
        imports[FLOOR] = [sys.executable, "-c", ORT_FLOOR, str(assets.model), n, str(one)]
        imports["python API: BiLSTM.load + predict, no CLI"] = [
            sys.executable,
            "-c",
            API_ONE_LINE,
            model_arg,
            n,
            str(one),
        ]

        def env_of(label: str) -> dict[str, str] | None:
            base = env if label in ours else None
            if label.endswith(ONE_BLAS_THREAD):
                return dict(base or os.environ, OPENBLAS_NUM_THREADS="1")
            return base

        for label, cmd in list(imports.items()):
            try:
                timed(cmd, env_of(label))
            except RuntimeError as exc:  # e.g. the floor on a model with other inputs
                if label != FLOOR:
                    raise
                result["floor_skipped"] = str(exc).splitlines()[-1][:300]
                del imports[label]
        parts_cpu: dict[str, list[float]] = {label: [] for label in imports}

        def part(label: str) -> float:
            run, seconds = timed(imports[label], env_of(label))
            parts_cpu[label].append(seconds)
            return run.wall_s

        cases: dict[str, Callable[[], float]] = {
            label: (lambda label=label: part(label)) for label in imports
        }
        parts = c.interleave(cases, max(3, args.rounds // 2), self_timed=True)
        result["breakdown_wall_s"] = {label: c.summary(xs) for label, xs in parts.items()}
        result["breakdown_cpu_s"] = {label: c.summary(xs) for label, xs in parts_cpu.items()}
        result["slowest_imports"] = slowest_imports(run_args, env)
    print(
        f"cold start ({args.bytecode}): runtime {stats['runtime']['median']:.3f} s "
        f"(CPU {result['cpu_s']['runtime']['median']:.3f} s), torch "
        f"{stats['torch']['median']:.3f} s, ratio {result['ratio']:.2f}",
        file=sys.stderr,
    )
    c.save(NAME, args, argv, result, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
