"""Workload 5: memory. Peak RSS of `bilstm-run` on 10k vs 1M lines, and install sizes.

Peak RSS is the child's own `ru_maxrss` (os.wait4), output to /dev/null; it must stay flat
from 10k to 1M lines because the CLI reads, scores and writes a bounded chunk at a time. The
PyTorch script's peak RSS on the 10k file is given for scale. Install sizes: two fresh
virtual environments in a temp folder, `pip install .` (the runtime only: numpy, onnxruntime,
typer) and `pip install torch .[train]` (what running the PyTorch model needs), measured as
the bytes of their site-packages.

    python -m benchmarks.memory --threads 2
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "memory"
FLAT_TOLERANCE = 1.10  # "flat": the 1M-line peak within 10% of the 10k-line peak


def tree_bytes(root: Path) -> int:
    """Bytes of the regular files under `root` (links not followed)."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def site_packages(venv: Path) -> Path:
    found = list(venv.glob("lib/python*/site-packages"))
    if not found:
        raise RuntimeError(f"{venv}: no site-packages")
    return found[0]


def largest(site: Path, top: int = 6) -> list[dict[str, Any]]:
    """The biggest entries of a site-packages folder."""
    sizes = []
    for entry in site.iterdir():
        size = tree_bytes(entry) if entry.is_dir() else entry.stat().st_size
        sizes.append({"name": entry.name, "mib": round(size / 2**20, 1)})
    return sorted(sizes, key=lambda s: -s["mib"])[:top]


def source_copy(dest: Path) -> Path:
    """The project's source without environments, runs and caches (pip builds in place)."""
    skip = shutil.ignore_patterns(
        ".venv*",
        "runs",
        ".git",
        "*.egg-info",
        "build",
        "dist",
        "__pycache__",
        ".*_cache",
        ".typecheck",
        "results",
    )
    shutil.copytree(c.REPO, dest, ignore=skip)
    return dest


def venv_size(where: Path, name: str, requirements: list[str]) -> dict[str, Any]:
    """Create a venv, pip install `requirements`, measure its site-packages."""
    venv = where / name
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *requirements]
    done = subprocess.run(pip, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(pip)} failed:\n{done.stderr[-2000:]}")
    site = site_packages(venv)
    return {
        "pip_install": requirements,
        "site_packages_mib": round(tree_bytes(site) / 2**20, 1),
        "largest": largest(site),
    }


def install_sizes() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bilstm-bench-venv-") as tmp:
        where = Path(tmp)
        src = str(source_copy(where / "src"))
        try:
            torch_req = f"torch=={importlib.metadata.version('torch')}"
        except importlib.metadata.PackageNotFoundError:
            torch_req = "torch"
        runtime = venv_size(where, "runtime", [src])
        with_torch = venv_size(where, "torch", [torch_req, f"{src}[train]"])
    return {
        "runtime_only": runtime,
        "with_torch": with_torch,
        "ratio": c.ratio(with_torch["site_packages_mib"], runtime["site_packages_mib"]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    c.add_asset_options(p)
    p.add_argument("--small-lines", type=int, default=10_000)
    p.add_argument("--large-lines", type=int, default=1_000_000)
    p.add_argument("--no-install-size", action="store_true", help="skip the two venvs")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch script's RSS")
    args = p.parse_args(argv)
    if args.smoke:
        args.small_lines, args.large_lines = 100, 1000
        args.no_install_size = args.no_torch = True
    machine = c.machine_info(args.wait_quiet)
    assets = c.resolve_assets(args)
    texts = [t for _, t in c.read_tsv(assets.data)]
    work = Path(tempfile.mkdtemp(prefix="bilstm-bench-"))
    n = str(args.threads)
    runs: dict[str, Any] = {}
    for label, count in (("small", args.small_lines), ("large", args.large_lines)):
        path = c.write_lines(texts, work / f"{label}.txt", count)
        cmd = [
            c.bin_path("bilstm-run"),
            str(assets.model),
            str(path),
            "--threads",
            n,
            "--device",
            "cpu",
        ]
        run = c.check(c.run_process(cmd), cmd)
        runs[label] = {
            "lines": count,
            "max_rss_mib": round(run.max_rss_mib, 1),
            "wall_s": round(run.wall_s, 2),
            "command": cmd,
            "file_mib": round(path.stat().st_size / 2**20, 1),
        }
        print(
            f"{count} lines: peak RSS {run.max_rss_mib:.1f} MiB, {run.wall_s:.1f} s",
            file=sys.stderr,
        )
        if label == "small" and not args.no_torch:
            tcmd = [
                sys.executable,
                str(c.TORCH_BASELINE),
                str(assets.checkpoint),
                str(path),
                "--threads",
                n,
            ]
            trun = c.check(c.run_process(tcmd), tcmd)
            runs["torch_small"] = {
                "lines": count,
                "max_rss_mib": round(trun.max_rss_mib, 1),
                "wall_s": round(trun.wall_s, 2),
                "command": tcmd,
            }
        path.unlink()
    growth = c.ratio(runs["large"]["max_rss_mib"], runs["small"]["max_rss_mib"])
    result: dict[str, Any] = {
        "runs": runs,
        "rss_growth": growth,
        "flat": growth is not None and growth <= FLAT_TOLERANCE,
        "flat_tolerance": FLAT_TOLERANCE,
    }
    if not args.no_install_size:
        result["install"] = install_sizes()
    c.save(NAME, args, argv, result, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
