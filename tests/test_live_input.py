"""Live input: records follow their lines on a pipe (latency-bounded reading), online
forecasting (`--follow`), the `stream` API, and the reader's guarantees on live input.

Waits are bounded (a record that does not come fails the test after a timeout); the pauses
between written lines add up to well under a second.
"""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import bilstm, sigint_as_in_a_terminal
from hypothesis import given, settings
from hypothesis import strategies as st

from bilstm.core.errors import DataError, InputError
from bilstm.core.reader import LineSplitter, deadline_batches, iter_lines, line_batches
from bilstm.runtime import BiLSTM

BIN = Path(sys.executable).parent
DEMAND = Path(__file__).parents[1] / "examples" / "demand.csv"
WAIT = 30.0  # seconds a record may take before the test fails (a cold start included)
PAUSE = 0.03  # between written lines: 8 lines x 0.03 s, well under a second in all


class Lines:
    """A child process's stdout, read line by line with a deadline per line."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.proc = proc
        self.buffer = b""

    def next(self, timeout: float = WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no record within {timeout} s (have {self.buffer!r})")
            data = os.read(self.fd, 1 << 16)
            if not data:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"output ended early: {self.buffer!r} {err}")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return dict(json.loads(line))


def _start(*args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [BIN / "bilstm-run", *map(str, args), "--threads", "1", "--device", "cpu"],
        preexec_fn=sigint_as_in_a_terminal,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _write(proc: subprocess.Popen[bytes], text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(text.encode())
    proc.stdin.flush()


# -- bilstm-run on a live pipe -------------------------------------------------------------


def test_each_record_comes_before_the_next_line_is_written() -> None:
    """A writer thread feeds the pipe line by line; it writes line i+1 only once record i
    is out, and fails the test if the record does not come (bounded wait)."""
    texts = [b"a gorgeous film", b"dull and slow", b"", b"\xff not text", b"witty", b"ok"]
    proc = _start("sentiment", "-")
    out = Lines(proc)
    seen: queue.Queue[dict[str, Any]] = queue.Queue()
    order: list[str] = []

    def writer() -> None:
        for i, text in enumerate(texts, 1):
            assert proc.stdin is not None
            proc.stdin.write(text + b"\n")
            proc.stdin.flush()
            order.append(f"wrote {i}")
            record = seen.get(timeout=WAIT)  # raises queue.Empty: record i never came
            order.append(f"record {record['line']}")
            time.sleep(PAUSE)
        assert proc.stdin is not None
        proc.stdin.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in texts:
            seen.put(out.next())
    finally:
        thread.join(WAIT)
    assert order == [x for i in range(1, len(texts) + 1) for x in (f"wrote {i}", f"record {i}")]
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.wait(timeout=WAIT) == 1, err  # the undecodable line is an error record
    assert b"6 records, 1 errors" in err


def test_output_file_is_flushed_while_the_pipe_is_open(tmp_path: Path) -> None:
    """--output on a live pipe: records reach the temp file as they are scored, the file
    is renamed into place when the input ends."""
    target = tmp_path / "out.jsonl"
    proc = _start("sentiment", "-", "--output", target, "--quiet")
    _write(proc, "a fine film\n")
    deadline = time.monotonic() + WAIT
    while not any(p.read_text() for p in tmp_path.glob(".out.jsonl.*.part")):
        assert time.monotonic() < deadline, "the record did not reach the temp file"
        time.sleep(0.02)
    assert not target.exists()
    _write(proc, "another\n")
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=WAIT) == 0
    assert [json.loads(x)["line"] for x in target.read_text().splitlines()] == [1, 2]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_stream_keeps_todays_guarantees(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """Killed while waiting on a live pipe: the output file is not written (a previous one
    is intact), and the message says so, as for a file input."""
    target = tmp_path / "out.jsonl"
    target.write_text("previous\n")
    proc = _start("sentiment", "-", "--output", target)
    _write(proc, "a fine film\n")
    deadline = time.monotonic() + WAIT
    while not any(p.read_text() for p in tmp_path.glob(".out.jsonl.*.part")):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)  # it now waits in select() for the next line
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == code, err
    assert f"{target} was not written" in err.decode()
    assert target.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_interrupt_on_stdout_keeps_the_printed_records() -> None:
    proc = _start("sentiment", "-")
    out = Lines(proc)
    _write(proc, "a fine film\n")
    assert out.next()["line"] == 1
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130
    assert b"records printed so far are complete" in err


# -- online forecasting --------------------------------------------------------------------


def test_follow_forecasts_each_row_before_the_next_is_written() -> None:
    """Forecast for row t+1 is out before row t+1 is written; the check of row t+1 uses it."""
    lines = DEMAND.read_text().splitlines()
    proc = _start("elecdemand-h1", "-", "--follow", "--anomalies", "--quiet")
    out = Lines(proc)
    _write(proc, "\n".join(lines[:49]) + "\n")  # header + one window (48 rows)
    forecast = out.next()
    assert forecast == {"row": 49, "forecast": forecast["forecast"]}
    for number in range(50, 56):
        time.sleep(PAUSE)
        _write(proc, lines[number - 1] + "\n")  # row t+1 is written only now
        check = out.next()
        assert check["row"] == number and check["expected"] == forecast["forecast"]
        actual = float(lines[number - 1].split(",")[1])
        assert check["actual"] == pytest.approx(actual, abs=1e-5)
        assert check["anomaly"] == any(check["anomalies"])
        forecast = out.next()
        assert forecast["row"] == number and len(forecast["forecast"]) == 1
    _write(proc, "1,not a number,0,20\n")  # a bad row: an error record, the stream goes on
    assert out.next() == {
        "row": 56,
        "error": "column 'Demand' has 'not a number', expected a number",
    }
    _write(proc, lines[55] + "\n")
    assert out.next()["expected"] == forecast["forecast"]  # checked against the last forecast
    assert out.next()["row"] == 57
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=WAIT) == 1  # one error record


def test_follow_on_a_file_matches_rolling(tmp_path: Path) -> None:
    """The online forecasts and z-scores are those of --rolling --anomalies."""
    rolling = bilstm("run", "elecdemand-h1", DEMAND, "--rolling", "--anomalies", "-q")
    follow = bilstm("run", "elecdemand-h1", DEMAND, "--follow", "--anomalies", "-q")
    assert rolling.exit_code == follow.exit_code == 0, follow.stderr
    batch = [json.loads(x) for x in rolling.stdout.splitlines()]
    online = [json.loads(x) for x in follow.stdout.splitlines()]
    forecasts = [r for r in online if "forecast" in r]
    checks = [r for r in online if "actual" in r]
    assert [(r["row"], r["forecast"]) for r in forecasts] == [
        (r["row"], r["forecast"]) for r in batch
    ]
    assert [c["zscores"] for c in checks] == [r["zscores"] for r in batch[:-1]]
    assert len(online) == 2 * len(batch) - 1
    tsv = bilstm("run", "elecdemand-h1", DEMAND, "--follow", "--anomalies", "-q", "-f", "tsv")
    assert tsv.stdout.splitlines()[0].split("\t") == [
        "row",
        "forecast",
        "actual",
        "expected",
        "zscores",
        "anomalies",
        "anomaly",
        "error",
    ]


def test_follow_bad_rows_and_header(tmp_path: Path) -> None:
    rows = DEMAND.read_text().splitlines()
    feed = tmp_path / "feed.csv"
    feed.write_text("\n".join([*rows[:50], "1,2", "", "3,,0,1", "4,inf,0,1", *rows[50:52]]) + "\n")
    run = bilstm("run", "elecdemand-h1", feed, "--follow", "-q")
    records = [json.loads(x) for x in run.stdout.splitlines()]
    assert run.exit_code == 1
    assert [r for r in records if "error" in r] == [
        {"row": 51, "error": "expected 4 columns, found 2"},
        {"row": 53, "error": "column 'Demand' has a missing value, expected a number"},
        {"row": 54, "error": "column 'Demand' is inf, expected a finite number"},
    ]
    assert [r["row"] for r in records if "forecast" in r] == [49, 50, 55, 56]
    stop = bilstm("run", "elecdemand-h1", feed, "--follow", "--on-error", "stop")
    assert stop.exit_code == 2 and f"{feed}:51: expected 4 columns" in stop.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("step,Load\n1,2\n")
    run = bilstm("run", "elecdemand-h1", bad, "--follow")
    assert run.exit_code == 2
    assert "columns ['Demand', 'WorkDay', 'Temperature'] not in" in run.stderr


@pytest.mark.parametrize(
    "model, args, message",
    [
        ("sentiment", ["--follow"], "--follow applies to forecast models"),
        ("elecdemand-h1", ["--max-delay-ms", "5"], "--max-delay-ms: applies to rows read as"),
        ("elecdemand-h1", ["--on-error", "stop"], "it needs --follow"),
        ("elecdemand-h1", ["--follow", "--threshold", "2"], "--threshold sets"),
    ],
)
def test_follow_options_refused(model: str, args: list[str], message: str) -> None:
    run = bilstm("run", model, DEMAND, *args)
    assert run.exit_code == 2 and message in run.stderr, run.stderr


# -- the reader ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=80).map(lambda b: b.replace(b"a", b"\n")),
    bom=st.booleans(),
    limit=st.integers(1, 12),
    cuts=st.lists(st.integers(1, 9), max_size=30),
)
def test_splitter_reads_as_iter_lines(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, bom: bool, limit: int, cuts: list[int]
) -> None:
    """Bytes cut anywhere give the lines, numbers and errors `iter_lines` gives a file."""
    data = (b"\xef\xbb\xbf" if bom else b"") + data.replace(b"b", b"\r\n")
    path = tmp_path_factory.mktemp("split") / "in.txt"
    path.write_bytes(data)
    splitter, got, at = LineSplitter(limit), [], 0
    for cut in [*cuts, len(data)]:
        got += splitter.feed(data[at : at + cut])
        at += cut
    got += splitter.finish()
    assert got == list(iter_lines(path, limit))


def _pipe_batches(max_delay_ms: float, chunk: int = 100) -> tuple[Any, Iterator[list[Any]]]:
    read, write = os.pipe()
    source = f"/dev/fd/{read}"
    return (read, write), line_batches(source, 1 << 20, chunk, max_delay_ms)


def test_line_batches_on_a_pipe_end_at_the_deadline() -> None:
    (read, write), batches = _pipe_batches(20)
    os.write(write, b"one\ntwo\nthr")
    start = time.monotonic()
    first = next(batches)
    assert [x.text for x in first] == ["one", "two"]
    assert time.monotonic() - start < 2  # deadline 20 ms (+ a busy box), not "at EOF"
    os.write(write, b"ee\n")
    assert [x.number for x in next(batches)] == [3]
    os.close(write)
    assert list(batches) == []
    os.close(read)


def test_line_batches_full_chunks_on_pipe_and_file(tmp_path: Path) -> None:
    (read, write), batches = _pipe_batches(10_000, chunk=3)
    os.write(write, b"".join(b"%d\n" % i for i in range(7)))
    assert [len(b) for b in (next(batches), next(batches))] == [3, 3]
    os.close(write)
    assert [x.text for b in batches for x in b] == ["6"]
    os.close(read)
    path = tmp_path / "in.txt"
    path.write_bytes(b"x\n" * 10)
    assert [len(b) for b in line_batches(path, 100, 4, 0)] == [4, 4, 2]  # files: full chunks


def test_deadline_batches() -> None:
    items: queue.Queue[object] = queue.Queue()

    def feed() -> Iterator[object]:
        while (item := items.get(timeout=WAIT)) is not None:
            yield item

    batches = deadline_batches(feed(), 10, 10)
    items.put(1)
    items.put(2)
    assert next(batches) == [1, 2]  # the generator blocks, the batch still comes
    items.put(3)
    assert next(batches) == [3]
    items.put(None)
    assert list(batches) == []

    def broken() -> Iterator[int]:
        yield 1
        raise ValueError("socket closed")

    got = deadline_batches(broken(), 10, 1000)
    assert next(got) == [1]
    with pytest.raises(ValueError, match="socket closed"):
        next(got)


# -- the Python API ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentiment() -> BiLSTM:
    return BiLSTM.load("sentiment", device="cpu", threads=1)


@pytest.fixture(scope="module")
def demand() -> BiLSTM:
    return BiLSTM.load("elecdemand-h1", device="cpu", threads=1)


def test_stream_yields_each_record_before_the_next_input(sentiment: BiLSTM) -> None:
    inputs: queue.Queue[object] = queue.Queue()

    def lines() -> Iterator[object]:
        while (item := inputs.get(timeout=WAIT)) is not None:
            yield item

    stream = sentiment.stream(lines(), max_delay_ms=5)
    expected = sentiment.stream(["a fine film", "dull"], max_delay_ms=0)
    for i, text in enumerate(["a fine film\n", b"dull\r\n"], 1):
        inputs.put(text)
        record = next(stream)  # comes while the generator is blocked on the queue
        assert record == next(expected) and record["line"] == i
    inputs.put(b"\xff\n")
    assert next(stream)["error"].startswith("not valid UTF-8")
    inputs.put(7)
    assert next(stream) == {"line": 4, "error": "expected a string, got int"}
    inputs.put(None)
    assert list(stream) == []


def test_stream_forecaster_online(demand: BiLSTM) -> None:
    lines = DEMAND.read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, x.split(","), strict=True)) for x in lines[1:52]]
    records = list(demand.stream(rows, anomalies=True, threshold=2.0))
    by_csv = list(demand.stream(lines[:52], anomalies=True, threshold=2.0))
    numbers = [[float(v) for v in x.split(",")[1:]] for x in lines[1:52]]
    by_list = list(demand.stream(numbers, anomalies=True, threshold=2.0))
    assert [r["row"] for r in records if "forecast" in r] == [48, 49, 50, 51]
    assert [r["row"] for r in by_csv if "forecast" in r] == [49, 50, 51, 52]  # header first
    strip = [{k: v for k, v in r.items() if k != "row"} for r in records]
    assert strip == [{k: v for k, v in r.items() if k != "row"} for r in by_csv]
    assert len(by_list) == len(records)
    bad = list(demand.stream([{"Demand": 1}, [1, 2], None]))
    assert [r["error"][:12] for r in bad] == ["columns ['Wo", "expected a m", "expected a m"]


def test_stream_options_checked(sentiment: BiLSTM, demand: BiLSTM) -> None:
    with pytest.raises(InputError, match="top_k applies to cloze models only"):
        sentiment.stream(["x"], top_k=3)  # checked when called, before any iteration
    with pytest.raises(InputError, match="stream\\(\\) takes a list"):
        sentiment.stream("a text")
    with pytest.raises(InputError, match="max_delay_ms"):
        sentiment.stream(["x"], max_delay_ms=-1)
    with pytest.raises(DataError, match="not in the header"):
        list(demand.stream(["a,b\n", "1,2\n"]))
