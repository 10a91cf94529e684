"""examples/node: Node.js + onnxruntime-node classify raw text with a standalone model exactly
as the Python runtime does on the same file.

Needs `node`, and `onnxruntime-node` either installed in examples/node (`npm ci` there) or
installable from the npm registry into a temporary copy; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bilstm.runtime import BiLSTM

pytestmark = [pytest.mark.node, pytest.mark.slow]

NODE_DIR = Path(__file__).resolve().parent.parent / "examples" / "node"
MODEL = NODE_DIR / "sentiment-standalone.onnx"
TEXTS = [
    "A gorgeous, witty, seductive movie.",
    "Dull, lifeless and FAR too long...",
    "It's not bad; it’s GREAT!",
    "Café déjà-vu: naïve ÉCOLE, Straße — ΟΔΟΣ İstanbul 😀",
    "",
    "   ",
]


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with classify.js and a working onnxruntime-node."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: examples/node needs Node.js >= 18")
    if (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():
        return NODE_DIR
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("onnxruntime-node is not installed in examples/node and npm is missing")
    work = tmp_path_factory.mktemp("node")
    for name in ("package.json", "package-lock.json", "classify.js", MODEL.name):
        shutil.copy(NODE_DIR / name, work / name)
    # ONNXRUNTIME_NODE_INSTALL=skip: the CPU binaries ship in the package; do not fetch CUDA ones.
    env = {**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}
    try:
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm ci timed out: is the npm registry reachable?")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        pytest.skip(f"onnxruntime-node could not be installed with npm ci: {' | '.join(tail)}")
    return work


def classify_with_node(folder: Path, model: Path, texts: list[str]) -> list[dict]:  # type: ignore[type-arg]
    proc = subprocess.run(
        ["node", "classify.js", str(model), *texts],
        cwd=folder,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.split("\n") if line]  # not splitlines: U+2028


def assert_same_as_python(model: Path, texts: list[str], results: list[dict]) -> None:  # type: ignore[type-arg]
    expected = BiLSTM.load(model, device="cpu", threads=1).classify(texts)
    assert [r["text"] for r in results] == texts
    for got, ref in zip(results, expected, strict=True):
        assert got["label"] == ref.label
        assert got["num_tokens"] == ref.num_tokens
        if ref.probabilities is None:
            assert got["probabilities"] is None
            continue
        assert got["probabilities"].keys() == ref.probabilities.keys()
        for label, p in ref.probabilities.items():
            assert abs(got["probabilities"][label] - p) <= 1e-6


def test_node_classifies_like_the_python_runtime(node_dir: Path) -> None:
    assert MODEL.is_file(), "examples/node/sentiment-standalone.onnx is missing"
    results = classify_with_node(node_dir, MODEL, TEXTS)
    assert_same_as_python(MODEL, TEXTS, results)
    assert results[0]["label"] == "positive" and results[1]["label"] == "negative"


def test_node_default_run_prints_samples(node_dir: Path) -> None:
    proc = subprocess.run(
        ["node", str(node_dir / "classify.js")],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 4 and lines[-1]["label"] is None


def test_node_matches_python_on_a_model_made_here(node_dir: Path, tmp_path: Path) -> None:
    """Another ONNX Runtime build (onnxruntime-node) tokenizes non-ASCII text the same way."""
    pytest.importorskip("torch")
    from test_standalone import CORPUS, make_checkpoint
    from test_standalone import TEXTS as CORPUS_TEXTS

    from bilstm.export import export_checkpoint

    ckpt = make_checkpoint("classify", CORPUS_TEXTS)
    path = tmp_path / "tiny.onnx"
    export_checkpoint(ckpt, path, with_tokenizer=True)
    texts = [t.replace("\x00", "") for t in CORPUS + CORPUS_TEXTS[len(CORPUS) : len(CORPUS) + 40]]
    assert_same_as_python(path, texts, classify_with_node(node_dir, path, texts))
