"""The test suite's wall time against an older commit's, on the test functions both have.

Issue #15 asks for a suite at least 30% faster on 2 cores than the one of commit fd31436.
The suite has grown since (new features bring new tests), so the like-for-like figure runs
the same test functions on both sides: node ids with their parametrisation dropped
(`tests/test_x.py::test_y`), collected in each checkout; a function that exists on one side
only is left out, and its name is listed. Each side runs with its own README's test command
(`--old-command`, `--new-command`), from its own checkout and environment, old and new
alternating for `--rounds` rounds so that a burst of other load falls on both. `--whole` adds
each side's whole suite to every round.

    git worktree add /tmp/old fd31436
    python3 -m venv /tmp/oldvenv && /tmp/oldvenv/bin/pip install -e /tmp/old   # + its deps
    python -m benchmarks.suite_speed --old-repo /tmp/old --old-python /tmp/oldvenv/bin/python

Wall time is from spawn to exit of the pytest process; CPU time is that process's and its
reaped children's (user + system; the daemons Ray and Spark leave are not in it). `--smoke`
runs one small test file of this checkout on both sides, once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import REPO, machine_info, median, parser, save

OLD_COMMAND = "python -m pytest"
"""The test command of the README at fd31436."""
NEW_COMMAND = "python -m pytest -n 2 --dist loadfile"
"""The test command of the README now (and of .ci/run)."""
SMOKE_FILE = "tests/test_metrics.py"


def functions(node_ids: Sequence[str]) -> list[str]:
    """`file::function` of each collected node id (parametrisation dropped), sorted, unique."""
    return sorted({re.sub(r"\[.*$", "", n) for n in node_ids if "::" in n})


def collect(repo: Path, python: str, selection: Sequence[str] = ()) -> list[str]:
    """The node ids pytest collects in `repo` with `python` (errors raise, with pytest's tail)."""
    cmd = [python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *selection]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"collection failed in {repo}:\n{proc.stdout[-2000:]}{proc.stderr}")
    return [line.strip() for line in proc.stdout.splitlines() if "::" in line]


COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")


def counts(summary: str) -> dict[str, int]:
    """{"passed": n, ...} from pytest's last summary line ("3 passed, 1 skipped in 2.0s")."""
    found: dict[str, int] = {}
    for number, kind in COUNT.findall(summary):
        found[kind.rstrip("s") if kind.startswith("error") else kind] = int(number)
    return found


def run_suite(repo: Path, python: str, command: str, selection: Sequence[str]) -> dict[str, Any]:
    """One timed pytest run: wall and CPU seconds, exit status and the summary's counts."""
    words = command.split()
    if words[0] == "python":
        words[0] = python
    cmd = [*words, "-q", "-p", "no:cacheprovider", *selection]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    tail = out.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "exit_code": os.waitstatus_to_exitcode(status),
        "counts": counts(tail[0]),
    }


def git_commit(repo: Path) -> str | None:
    """The commit checked out in `repo` (None outside git)."""
    proc = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return proc.stdout.strip() or None


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("suite_speed", __doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--old-repo", type=Path, help="a checkout of the older commit")
    p.add_argument("--old-python", default=None, help="the Python of its environment")
    p.add_argument("--old-command", default=OLD_COMMAND)
    p.add_argument("--new-command", default=NEW_COMMAND)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--whole", action="store_true", help="also each side's whole suite")
    args = p.parse_args(argv)
    if args.smoke:
        args.old_repo, args.old_python, args.rounds, args.whole = REPO, sys.executable, 1, False
    if args.old_repo is None or args.old_python is None:
        p.error("--old-repo and --old-python are needed (or --smoke)")
    machine = machine_info(args.wait_quiet)
    old_repo = args.old_repo.resolve()
    scope = [SMOKE_FILE] if args.smoke else []
    old = functions(collect(old_repo, args.old_python, scope))
    new = functions(collect(REPO, sys.executable, scope))
    shared = sorted(set(old) & set(new))
    if not shared:
        raise SystemExit("the two checkouts have no test function in common")
    sides = {
        "old": (old_repo, args.old_python, args.old_command),
        "new": (REPO, sys.executable, args.new_command),
    }
    runs: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(args.rounds):
        for part, selection in (("shared", shared), ("whole", scope)):
            if part == "whole" and not args.whole:
                continue
            for side, (repo, python, command) in sides.items():
                run = run_suite(repo, python, command, selection)
                runs.setdefault(f"{part}/{side}", []).append(run)
                print(f"round {round_ + 1} {part} {side}: {run}", file=sys.stderr)
    summary = {}
    for key, rs in runs.items():
        summary[key] = {"median_wall_s": round(median([r["wall_s"] for r in rs]), 2)}
    for part in ("shared", "whole"):
        if f"{part}/old" in summary:
            old_s = summary[f"{part}/old"]["median_wall_s"]
            new_s = summary[f"{part}/new"]["median_wall_s"]
            summary[part] = {
                "new_over_old": round(new_s / old_s, 3),
                "faster_by": round(1 - new_s / old_s, 3),
            }
    data = {
        "old": {
            "commit": git_commit(old_repo),
            "command": args.old_command,
            "functions": len(old),
        },
        "new": {"command": args.new_command, "functions": len(new)},
        "shared_functions": len(shared),
        "only_old": sorted(set(old) - set(new)),
        "runs": runs,
        "summary": summary,
    }
    save("suite_speed", args, argv, data, machine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
