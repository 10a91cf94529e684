"""Device selection: clear errors without CUDA, and CUDA parity where a GPU is present."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from bilstm.runtime import BiLSTM, DeviceError, InputError

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
TEXTS = ["A gorgeous, witty, seductive movie.", "Dull and lifeless.", "", "fine"]


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_cuda_request_without_cuda_says_why() -> None:
    with pytest.raises(DeviceError, match=r"onnxruntime-gpu|CUDA"):
        BiLSTM.load("sentiment", device="cuda")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_auto_without_cuda_runs_on_the_cpu_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="bilstm"):
        model = BiLSTM.load("sentiment", device="auto", threads=1)
    assert model.providers == ["CPUExecutionProvider"]
    assert "no CUDA provider" in caplog.text


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a CUDA GPU")
def test_auto_with_cuda_prefers_it() -> None:
    assert BiLSTM.load("sentiment", device="auto").providers[0] == "CUDAExecutionProvider"


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a CUDA GPU")
def test_cuda_matches_cpu() -> None:
    cpu = BiLSTM.load("sentiment", device="cpu", threads=1).predict(TEXTS)
    gpu_model = BiLSTM.load("sentiment", device="cuda")
    assert gpu_model.providers[0] == "CUDAExecutionProvider"
    gpu = gpu_model.predict(TEXTS)
    for a, b in zip(cpu, gpu, strict=True):
        assert a.label == b.label
        if a.probabilities is not None and b.probabilities is not None:
            assert max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities) < 1e-4


def test_default_batch_size_follows_the_device() -> None:
    model = BiLSTM.load("sentiment", device="cpu", threads=1)
    assert model.batch_size == 64
    model.batch_size = 0  # the default of every call that names none
    with pytest.raises(InputError, match=r"batch_size must be .*>= 1, got 0"):
        model.predict(TEXTS)
    assert len(model.predict(TEXTS, batch_size=2)) == len(TEXTS)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a CUDA GPU")
def test_cuda_batches_are_larger() -> None:
    assert BiLSTM.load("sentiment", device="cuda").batch_size == 1024


def test_cuda_library_preload_prints_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """onnxruntime.preload_dlls prints its failures; stdout carries results, stderr stays quiet."""
    from bilstm.runtime import session

    def noisy() -> None:
        print("Failed to load libcudnn.so.9: not found")

    monkeypatch.setattr(ort, "preload_dlls", noisy, raising=False)
    report = session._preload_cuda_libraries.__wrapped__()  # type: ignore[attr-defined]
    assert report == "Failed to load libcudnn.so.9: not found"
    assert capsys.readouterr() == ("", "")
