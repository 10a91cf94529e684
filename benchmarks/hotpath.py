"""Hot path: `bilstm-run`'s scoring loop against bare `session.run` on the same batches.

Share: the scoring loop of `bilstm-run` after the model is loaded (read the file, tokenise,
look up ids, pad, `session.run`, build records, write JSONL to a file: `runtime.cli._score`,
the code the command runs) against `session.run` alone on exactly the batches that loop fed
it (captured in a first pass), in one process, interleaved A, B, A, B. share = loop items/s /
bare items/s; the issue's target is >= 0.85.

Workers: whole `bilstm-run` processes on the same file with `--workers W --threads T`
(1 x cores, 1 x 1, cores x 1, ...), interleaved; items/s over scoring (the summary line) and
over the whole process, and whether each output is byte-identical to the first's.

    python -m benchmarks.hotpath --threads 2
"""

from __future__ import annotations

import filecmp
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "hotpath"
TARGET_SHARE = 0.85
SUMMARY = re.compile(r"(\d+) records, \d+ errors, ([\d.]+) s")


class _Recorder:
    """Stands in for the ONNX Runtime session during one pass and keeps every `run` call's
    output names and feeds (copies), so that the bare side runs the very same batches."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def run(self, names: list[str], feeds: dict[str, Any]) -> Any:
        self.calls.append((list(names), {k: v.copy() for k, v in feeds.items()}))
        return self._session.run(names, feeds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def share(args: Any, model_path: Path, source: Path, work: Path) -> dict[str, Any]:
    """Loop vs bare `session.run` in this process (see the module docstring)."""
    from bilstm.runtime.cli import OnError, _score
    from bilstm.runtime.model import BiLSTM, Reading
    from bilstm.runtime.output import Format
    from bilstm.runtime.taskspec import RunOptions

    model = BiLSTM.load(model_path, device="cpu", threads=args.threads)
    opts = RunOptions(args.batch_size)
    reading = Reading()
    out = work / "loop.jsonl"

    def loop() -> float:
        start = time.perf_counter()
        _score(model, str(source), out, Format.jsonl, opts, reading, OnError.record, True)
        return time.perf_counter() - start

    recorder = _Recorder(model.session)
    model.session = recorder  # type: ignore[assignment]
    loop()
    model.session = recorder._session
    calls = recorder.calls
    session = model.session

    def bare() -> float:
        start = time.perf_counter()
        for names, feeds in calls:
            session.run(names, feeds)
        return time.perf_counter() - start

    times = c.interleave({"loop": loop, "bare": bare}, args.rounds, self_timed=True)
    lines = sum(1 for _ in source.open("rb"))
    rows = sum(next(iter(f.values())).shape[0] for _, f in calls)
    loop_rate = lines / c.median(times["loop"])
    bare_rate = rows / c.median(times["bare"])
    return {
        "lines": lines,
        "batches": len(calls),
        "rows_scored": rows,
        "loop_s": c.summary(times["loop"]),
        "bare_s": c.summary(times["bare"]),
        "loop_items_per_s": loop_rate,
        "bare_items_per_s": bare_rate,
        "share": loop_rate / bare_rate,
        "target_share": TARGET_SHARE,
    }


def worker_configs(cores: int) -> list[tuple[int, int]]:
    """(workers, threads each) to compare: one process with every core, one with one
    thread, and one single-threaded worker per core (and half that, on bigger machines)."""
    configs = [(1, cores), (1, 1), (cores, 1)]
    if cores >= 4:
        configs.append((cores // 2, 2))
    return list(dict.fromkeys(configs))


def workers(args: Any, model_arg: str, source: Path, work: Path) -> dict[str, Any]:
    """Whole `bilstm-run` processes with different --workers/--threads (module docstring)."""
    configs = worker_configs(args.threads)
    cmds = {}
    for w, t in configs:
        out = work / f"w{w}t{t}.jsonl"
        cmds[f"{w}x{t}"] = (
            [
                c.bin_path("bilstm-run"),
                model_arg,
                str(source),
                "--workers",
                str(w),
                "--threads",
                str(t),
                "--batch-size",
                str(args.batch_size),
                "--device",
                "cpu",
                "--output",
                str(out),
            ],
            out,
        )
    runs: dict[str, list[c.ProcessRun]] = {name: [] for name in cmds}

    def side(name: str) -> float:
        cmd = cmds[name][0]
        run = c.check(c.run_process(cmd), cmd)
        runs[name].append(run)
        return run.wall_s

    c.interleave({name: (lambda n=name: side(n)) for name in cmds}, args.rounds, self_timed=True)
    lines = sum(1 for _ in source.open("rb"))
    first = next(iter(cmds.values()))[1]
    result: dict[str, Any] = {"lines": lines, "configs": {}}
    for name, (cmd, out) in cmds.items():
        walls = [r.wall_s for r in runs[name]]
        scoring = [float(m[-1][1]) for r in runs[name] if (m := SUMMARY.findall(r.stderr))]
        result["configs"][name] = {
            "workers": int(name.split("x")[0]),
            "threads_each": int(name.split("x")[1]),
            "command": cmd,
            "wall_s": c.summary(walls),
            "items_per_s_e2e": lines / c.median(walls),
            "items_per_s_scoring": lines / c.median(scoring) if scoring else None,
            "max_rss_mib": max(r.max_rss_mib for r in runs[name]),
            "same_output_as_first": filecmp.cmp(first, out, shallow=False),
        }
    best = max(result["configs"], key=lambda k: result["configs"][k]["items_per_s_e2e"])
    result["fastest_e2e"] = best
    return result


def assets(args: Any) -> tuple[Path, Path]:
    """The model and the texts (label<TAB>text) to score; no PyTorch checkpoint needed."""
    if args.smoke and args.model is None and args.data is None:
        tiny = c.resolve_assets(args)
        return tiny.model, tiny.data
    from bilstm.runtime.builtin import resolve_model

    model = resolve_model(args.model or c.SHIPPED_MODEL)
    data = args.data or c.SHARED_DEV
    if not Path(data).exists():
        sys.exit(f"error: data {data} does not exist (pass --data, or --smoke)")
    return Path(model), Path(data)


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    c.add_asset_options(p)
    p.add_argument("--lines", type=int, default=20_000, help="lines in the scored file")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-workers", action="store_true", help="skip the --workers comparison")
    args = p.parse_args(argv)
    if args.smoke:
        args.lines, args.rounds = min(args.lines, 300), 1
    machine = c.machine_info(args.wait_quiet)
    model_path, data = assets(args)
    model_arg = args.model or (c.SHIPPED_MODEL if not args.smoke else str(model_path))
    work = Path(tempfile.mkdtemp(prefix="bilstm-bench-"))
    texts = [text for _, text in c.read_tsv(data)]
    source = c.write_lines(texts, work / "input.txt", args.lines)
    result: dict[str, Any] = {
        "batch_size": args.batch_size,
        "share": share(args, model_path, source, work),
    }
    got = result["share"]
    print(
        f"share {got['share']:.3f}: loop {got['loop_items_per_s']:,.0f}/s, bare session.run "
        f"{got['bare_items_per_s']:,.0f}/s",
        file=sys.stderr,
    )
    if not args.no_workers:
        result["workers"] = workers(args, model_arg, source, work)
        for name, row in result["workers"]["configs"].items():
            print(
                f"workers x threads {name}: {row['items_per_s_e2e']:,.0f}/s whole process, "
                f"{row['items_per_s_scoring'] or 0:,.0f}/s scoring",
                file=sys.stderr,
            )
    c.save(NAME, args, argv, result, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
