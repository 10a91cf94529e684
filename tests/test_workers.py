"""`bilstm-run --workers N` and `score_file(workers=N)`: chunks scored in worker processes
come back in input order, identical to one process, with error records in place; a worker
that fails or dies is a clear error, and no worker outlives its run.

The built-in models cover every task that scores text files (classify fp32, tag with a
character CNN, cloze); no export is needed, so these run on the runtime-only install.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bilstm.core.reader import Line
from bilstm.runtime import BiLSTM
from bilstm.runtime.taskspec import RunOptions
from bilstm.runtime.workers import ModelSource, WorkerError, WorkerPool

BIN = Path(sys.executable).parent
BAD_UTF8 = b"caf\xe9 au lait"


def _lines(tmp_path: Path, texts: list[str]) -> Path:
    """An input file: the texts, an empty line, an invalid UTF-8 line and an over-long one."""
    path = tmp_path / "in.txt"
    body = "\n".join(texts).encode("utf-8")
    path.write_bytes(body + b"\n\n" + BAD_UTF8 + b"\n" + b"x " * 300 + b"\n" + body + b"\n")
    return path


TEXTS = {
    "sentiment": [
        "A gorgeous, witty, seductive movie.",
        "Dull and far too long.",
        "İstanbul'da ΟΔΟΣ.Β was fine",
        "ok",
    ],
    "pos-en": ["The quick brown fox jumps .", "I booked a table on Friday .", "Go !"],
    "cloze-en": ["I like my eggs ___ and scrambled .", "no blank here", "a ___ b ___ c"],
}


@pytest.mark.parametrize("name", list(TEXTS))
def test_workers_keep_order_and_match_one_process(tmp_path: Path, name: str) -> None:
    source = _lines(tmp_path, TEXTS[name] * 9)
    model = BiLSTM.load(name, device="cpu", threads=1)
    one = list(model.score_file(source, chunk_size=5, max_line_bytes=400))  # type: ignore[attr-defined]
    many = list(
        model.score_file(source, workers=3, threads=1, chunk_size=5, max_line_bytes=400)  # type: ignore[attr-defined]
    )
    assert many == one
    assert [r["line"] for r in many] == list(range(1, len(many) + 1))
    bad = [r for r in many if "error" in r and "UTF-8" in r["error"]]
    assert [r["line"] for r in bad] == [len(TEXTS[name]) * 9 + 2]
    assert any("max-line-bytes" in r.get("error", "") for r in many)


def test_cli_workers_output_is_byte_identical(tmp_path: Path) -> None:
    source = _lines(tmp_path, TEXTS["sentiment"] * 50)
    outputs = {}
    for fmt in ("jsonl", "tsv"):
        for workers in ("1", "2"):
            out = tmp_path / f"out-{workers}.{fmt}"
            cmd = [BIN / "bilstm-run", "sentiment", source, "--workers", workers, "--threads", "1"]
            cmd += ["--chunk-size", "16", "--format", fmt, "--output", out]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            assert done.returncode == 1, done.stderr  # the bad line's error record
            assert "1 errors" in done.stderr
            outputs[fmt, workers] = out.read_bytes()
        assert outputs[fmt, "1"] == outputs[fmt, "2"]
    assert b'"error": "not valid UTF-8' in outputs["jsonl", "2"]


def test_on_error_stop_with_workers_writes_nothing(tmp_path: Path) -> None:
    source = _lines(tmp_path, TEXTS["sentiment"] * 20)
    out = tmp_path / "out.jsonl"
    cmd = [BIN / "bilstm-run", "sentiment", source, "--workers", "2", "--on-error", "stop"]
    done = subprocess.run([*cmd, "--output", out], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert f"{source}:{len(TEXTS['sentiment']) * 20 + 2}: not valid UTF-8" in done.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def _pool(model: BiLSTM, workers: int = 2, **changes: object) -> WorkerPool:
    source = model.worker_source(threads=1)
    fields = {**source.__dict__, **changes}
    return WorkerPool(ModelSource(**fields), workers, RunOptions(8))  # type: ignore[arg-type]


def _chunk(start: int, n: int = 4) -> list[Line]:
    return [Line(start + i, "a witty movie") for i in range(n)]


def test_worker_that_cannot_load_the_model_is_a_clear_error(tmp_path: Path) -> None:
    model = BiLSTM.load("sentiment", device="cpu", threads=1)
    pool = _pool(model, path=str(tmp_path / "missing.onnx"))
    with pytest.raises(WorkerError, match=r"could not load the model: .*missing.onnx: no such"):
        with pool:
            list(pool.map([_chunk(1)]))
    assert not any(p.is_alive() for p in pool._procs)


def test_worker_failing_on_a_chunk_is_a_clear_error() -> None:
    model = BiLSTM.load("sentiment", device="cpu", threads=1)
    broken = WorkerPool(model.worker_source(threads=1), 2, RunOptions(0))
    with pytest.raises(WorkerError, match=r"a worker process failed: .*batch_size must be >= 1"):
        with broken:
            list(broken.map([_chunk(1), _chunk(5)]))
    assert not any(p.is_alive() for p in broken._procs)


def test_killed_worker_is_reported_not_waited_for() -> None:
    model = BiLSTM.load("sentiment", device="cpu", threads=1)
    pool = _pool(model)

    def chunks():  # type: ignore[no-untyped-def]
        yield _chunk(1)
        for proc in pool._procs:
            os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
        for start in range(5, 200, 4):
            yield _chunk(start)

    started = time.monotonic()
    with pytest.raises(WorkerError, match=r"died \(signal SIGKILL\)"):
        with pool:
            list(pool.map(chunks()))
    assert time.monotonic() - started < 120
    assert not any(p.is_alive() for p in pool._procs)


def test_early_stop_stops_the_workers(tmp_path: Path) -> None:
    """A caller that stops reading (a closed generator) leaves no worker behind."""
    source = _lines(tmp_path, TEXTS["sentiment"] * 40)
    model = BiLSTM.load("sentiment", device="cpu", threads=1)
    records = model.score_file(source, workers=2, threads=1, chunk_size=4)  # type: ignore[attr-defined]
    assert next(records)["line"] == 1
    import multiprocessing

    assert multiprocessing.active_children()
    records.close()
    del records
    deadline = time.monotonic() + 30
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not multiprocessing.active_children()


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_sigterm_stops_workers_and_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "big.txt"
    source.write_text("a gorgeous, witty and seductive movie that never lets up\n" * 200_000)
    out = tmp_path / "out.jsonl"
    cmd = [BIN / "bilstm-run", "sentiment", source, "--workers", "2", "--threads", "1"]
    proc = subprocess.Popen([*cmd, "--output", out], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while len(workers) < 2 or not list(tmp_path.glob(".out.jsonl.*.part")):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        workers |= _children(proc.pid)
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert f"{out} was not written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]
    # The workers, and multiprocessing's resource tracker, are gone within moments.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_running(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if _running(pid)]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_option_is_refused_where_it_does_not_apply(tmp_path: Path) -> None:
    from helpers.cli import bilstm

    csv = Path(__file__).resolve().parent.parent / "examples" / "demand.csv"
    done = bilstm("run", "elecdemand-h1", csv, "--workers", "2")
    assert done.exit_code == 2
    assert "--workers applies to classify/cloze/tag models" in done.stderr
    text = tmp_path / "t.txt"
    text.write_text("fine\n")
    done = bilstm("run", "sentiment", text, "--workers", "2", "--profile", tmp_path / "p")
    assert done.exit_code == 2
    assert "Profile with --workers 1" in done.stderr
