"""A run killed midway leaves no output file (or the previous one intact) and says so."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
    assert "no output file was written" in err
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt", "out.jsonl"]
