"""Python API guarantees: thread safety, determinism, input validation (base install only)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bilstm.runtime import BiLSTM, InputError

WORDS = "a gorgeous witty dull boring movie plot acting never lets up flat mess".split()


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(0, 30))) for _ in range(n)]


@pytest.fixture(scope="module")
def model() -> BiLSTM:
    return BiLSTM.load("sentiment", device="cpu", threads=1)


def test_many_threads_match_sequential(model: BiLSTM) -> None:
    batches = [_texts(40, seed) for seed in range(16)]
    sequential = [model.predict(b, batch_size=8) for b in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda b: model.predict(b, batch_size=8), batches))
    assert parallel == sequential


def test_bit_identical_across_loads(model: BiLSTM) -> None:
    texts = _texts(50, 99)
    other = BiLSTM.load("sentiment", device="cpu", threads=1)
    a = [p.probabilities for p in model.predict(texts)]
    b = [p.probabilities for p in other.predict(texts)]
    assert a == b


def test_batching_does_not_change_results(model: BiLSTM) -> None:
    texts = _texts(30, 7)
    one = [p.probabilities for p in model.predict(texts, batch_size=1)]
    many = [p.probabilities for p in model.predict(texts, batch_size=64)]
    for x, y in zip(one, many, strict=True):
        if x is None:
            assert y is None
        else:
            assert y is not None
            assert max(abs(x[k] - y[k]) for k in x) < 1e-5


def test_input_validation(model: BiLSTM) -> None:
    with pytest.raises(InputError, match="list of inputs"):
        model.predict("not a list")
    with pytest.raises(InputError, match="lengths must be within"):
        model.predict_arrays(np.ones((2, 3), np.int64), np.array([0, 3]))
    with pytest.raises(InputError, match="token ids must be within"):
        model.predict_arrays(np.full((1, 2), 10**9, np.int64), np.array([2]))
    with pytest.raises(InputError, match="missing model inputs"):
        model.run({"input_ids": np.ones((1, 1), np.int64)})
