"""A run killed midway leaves no output file (or the previous one intact) and says so."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.cli import sigint_as_in_a_terminal

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_killed_run_leaves_previous_output(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    src = tmp_path / "big.txt"
    line = "a gorgeous, witty and seductive movie that never lets up\n"
    src.write_text(line * 400_000)
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")
    proc = subprocess.Popen(
        [BIN / "bilstm-run", "sentiment", src, "--output", out, "--threads", "1", "--quiet"],
        preexec_fn=sigint_as_in_a_terminal,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not list(tmp_path.glob(".out.jsonl.*.part")):  # wait until it is writing
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"{out} was not written" in err
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt", "out.jsonl"]


def test_interrupt_with_stdout_output_does_not_claim_nothing_was_written(tmp_path: Path) -> None:
    """Records already printed to stdout are there: the message must not deny them."""
    src = tmp_path / "big.txt"
    src.write_text("a gorgeous, witty and seductive movie that never lets up\n" * 400_000)
    proc = subprocess.Popen(
        [BIN / "bilstm-run", "sentiment", src, "--threads", "1", "--quiet", "--chunk-size", "64"],
        preexec_fn=sigint_as_in_a_terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # records are flowing
    assert first.startswith('{"line": 1,')
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "no output file was written" not in err
    assert "records printed so far are complete" in err


def test_closed_pipe_is_not_a_record_error(tmp_path: Path) -> None:
    """`bilstm-run ... | head` stops quietly with 141 (SIGPIPE's code), not 1 (record errors)."""
    src = tmp_path / "big.txt"
    src.write_text("a fine film\n" * 50_000)
    proc = subprocess.Popen(
        [BIN / "bilstm-run", "sentiment", src, "--threads", "1", "--chunk-size", "64"],
        preexec_fn=sigint_as_in_a_terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # the reader quits, as `head` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "Broken pipe" not in err, err
