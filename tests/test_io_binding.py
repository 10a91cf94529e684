"""I/O binding path of `BiLSTM.run`: same results as `session.run`, on CPU and on CUDA."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from bilstm.runtime import BiLSTM, InputError
from bilstm.runtime.model import IO_BINDING_MIN_BATCH

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
WORDS = "a gorgeous witty dull boring movie plot acting never lets up flat mess".split()


def _texts(n: int) -> list[str]:
    rng = np.random.default_rng(5)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(n)]


def _bound_vs_plain(model: BiLSTM, n: int) -> float:
    """Largest probability difference between the bound and the plain path on n texts."""
    texts = _texts(n)
    if model.task == "cloze":
        tokens, positions, _ = model.cloze_inputs([t.replace(" ", " ___ ", 1) for t in texts])
    else:
        tokens, positions = model.tokens(texts), None
    threshold = model.io_binding_min_batch
    try:
        model.io_binding_min_batch = None
        plain = model._text_outputs(tokens, n, positions)
        model.io_binding_min_batch = 1
        bound = model._text_outputs(tokens, n, positions)
    finally:
        model.io_binding_min_batch = threshold
    pairs = [(a, b) for a, b in zip(plain, bound, strict=True) if a is not None]
    assert pairs and all(b is not None for _, b in pairs)
    return max(float(np.abs(a - b).max()) for a, b in pairs)  # type: ignore[operator]


def test_cpu_sessions_never_bind() -> None:
    model = BiLSTM.load("sentiment", device="cpu", threads=1)
    assert model._binding_device is None
    model.io_binding_min_batch = 1
    assert not model._binds({"input_ids": np.zeros((4096, 3), np.int64)})


def test_binding_is_off_by_default() -> None:
    """Measured slower than session.run on an H200 (benchmarks/RESULTS.md): opt-in only."""
    assert IO_BINDING_MIN_BATCH is None
    assert BiLSTM.load("sentiment", device="cpu", threads=1).io_binding_min_batch is None


def test_binding_path_matches_plain_run_on_cpu() -> None:
    """The binding code (names, order, host-side lengths) exercised with CPU buffers."""
    model = BiLSTM.load("sentiment", device="cpu", threads=1)
    model._binding_device = ("cpu", 0)
    assert _bound_vs_plain(model, 50) == 0.0
    feeds = model.encoder.batch([t.split() for t in _texts(3)])
    model.io_binding_min_batch = 1
    only = model.run(feeds, ["probabilities"])
    assert list(only) == ["probabilities"] and only["probabilities"].shape == (3, 2)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a CUDA GPU")
@pytest.mark.parametrize("name", ["sentiment", "cloze-en"])
def test_binding_path_matches_plain_run_on_cuda(name: str) -> None:
    model = BiLSTM.load(name, device="cuda")
    assert model._binding_device == ("cuda", 0)
    assert _bound_vs_plain(model, 300) <= 1e-6


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a CUDA GPU")
def test_cuda_binding_is_thread_safe() -> None:
    model = BiLSTM.load("sentiment", device="cuda")
    model.io_binding_min_batch = 1
    batches = [_texts(64 + i) for i in range(8)]
    sequential = [model.probabilities(b, batch_size=64) for b in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda b: model.probabilities(b, batch_size=64), batches))
    for a, b in zip(sequential, parallel, strict=True):
        assert max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True)) <= 1e-6


def test_run_fetches_the_named_outputs_and_refuses_others() -> None:
    model = BiLSTM.load("sentiment", device="cpu", threads=1)
    feeds = model.encoder.batch([["good", "film"]])
    assert list(model.run(feeds)) == ["logits", "probabilities"]
    assert list(model.run(feeds, "probabilities")) == ["probabilities"]
    for bad in ([], ["nope"], "nope"):
        with pytest.raises(InputError, match="outputs must name some of the model's outputs"):
            model.run(feeds, bad)
