"""`bilstm-run` start-up stays light: the CLI layer must not pull in pydantic.

typer 0.29 parses every option through a pydantic TypeAdapter, which added ~0.17 s to each
cold start (benchmarks/findings.md, section 3); pyproject.toml pins typer below it. This test
fails if a typer that imports pydantic at parse time gets installed again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys
from bilstm.runtime.cli import run_main
sys.argv = ["bilstm-run", "sentiment", sys.argv[1], "--quiet"]
try:
    run_main()
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = ("pydantic", "rich.progress", "torch")
print(json.dumps([m for m in heavy if m in sys.modules]), file=sys.stderr)
"""


def test_bilstm_run_imports_no_pydantic(tmp_path: Path) -> None:
    src = tmp_path / "one.txt"
    src.write_text("A gorgeous, witty, seductive movie.\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(src)], capture_output=True, text=True, check=True
    )
    record = json.loads(out.stdout)
    assert record["line"] == 1 and record["label"] in ("negative", "positive")
    assert json.loads(out.stderr.strip().splitlines()[-1]) == []


TRAIN_HELP = """
import json, sys
from bilstm.cli import main
sys.argv = ["bilstm", "train", "--help"]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps([m for m in ("torch", "bilstm.models.training") if m in sys.modules]),
      file=sys.stderr)
"""


def test_bilstm_train_help_imports_no_torch() -> None:
    """`bilstm train --help` answers without torch, which takes seconds to import."""
    out = subprocess.run(
        [sys.executable, "-c", TRAIN_HELP], capture_output=True, text=True, check=True
    )
    assert "--hidden-size" in out.stdout and "--resume" in out.stdout
    assert json.loads(out.stderr.strip().splitlines()[-1]) == []
