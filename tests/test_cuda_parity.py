"""On a CUDA GPU the exported models compute what the PyTorch models compute (ragged batches).

Skipped without onnxruntime-gpu and a GPU; run with `python -m pytest -m cuda` where there is
one. The runtime turns TF32 off (checked below), so the CPU's criterion holds: |diff| <= 1e-5
(1 + |value|); on an H200 the worst case here was 1.8e-7. With TF32 on, the differences reach
1e-3 to 1e-2 (benchmarks/RESULTS.md), and padding leaks or wrong directions 0.1 and more.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from helpers.checkpoints import random_checkpoint  # noqa: E402
from test_export_parity import CONFIGS, TASK_CONFIGS, _name  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bilstm.export import export_checkpoint  # noqa: E402
from bilstm.export.verify import (  # noqa: E402
    random_feeds,
    reference_outputs,
    valid_positions,
)
from bilstm.runtime import BiLSTM  # noqa: E402
from bilstm.runtime.cli import _make_apps  # noqa: E402

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
CUDA_TOL = 1e-5
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a CUDA GPU"),
]


@pytest.mark.parametrize("options", CONFIGS + TASK_CONFIGS, ids=_name)
def test_cuda_parity_on_ragged_batches(options: dict[str, object], tmp_path: Path) -> None:
    ckpt = random_checkpoint(seed=17, **options)
    path = tmp_path / "m.onnx"
    export_checkpoint(ckpt, path)
    model = BiLSTM.load(path, device="cuda")
    assert model.providers[0] == "CUDAExecutionProvider"
    options = model.session.get_provider_options()["CUDAExecutionProvider"]
    assert options["use_tf32"] == "0"
    model.io_binding_min_batch = 256  # (300, 24) goes through I/O binding, the rest not
    for batch, time, seed in [(7, 13, 11), (3, 40, 12), (1, 1, 14), (300, 24, 13)]:
        feeds = random_feeds(ckpt, batch, time, seed)
        ref = reference_outputs(ckpt, feeds)
        got = model.run(feeds)
        for name, value in ref.items():
            out = got[name]
            assert out.shape == value.shape
            value = valid_positions(ckpt.task, feeds, value)  # padded positions are never read
            out = valid_positions(ckpt.task, feeds, out)
            worst = float((np.abs(out - value) / (1 + np.abs(value))).max())
            print(f"{_name(options)} b={batch} t={time} {name}: {worst:.2e}")
            assert worst <= CUDA_TOL, (name, batch, time, worst)


def test_cli_on_cuda_matches_cpu(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("A gorgeous, witty movie.\n\nDull and lifeless.\nfine\n" * 100, "utf-8")
    _, single = _make_apps()
    runner = CliRunner()
    outs = {}
    for device in ("cpu", "cuda"):
        result = runner.invoke(single, ["sentiment", str(src), "--device", device, "--quiet"])
        assert result.exit_code == 0, result.output
        outs[device] = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(outs["cpu"]) == len(outs["cuda"]) == 400
    for a, b in zip(outs["cpu"], outs["cuda"], strict=True):
        assert a["line"] == b["line"] and a["label"] == b["label"]
        if a["probabilities"] is not None:
            for k, v in a["probabilities"].items():
                assert abs(v - b["probabilities"][k]) <= 1e-5  # 6 decimals written
