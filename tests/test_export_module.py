"""`export_module`: users' own LSTM/GRU modules exported padding-exact, checked two ways.

Six module shapes people write (tiny sizes): each is exported, its graph must hold one fused
node fed `sequence_lens` per layer (Scans for LSTMP), ONNX Runtime must match PyTorch on the
ragged cases, and `onnx.reference` (a second engine) must match each row alone. Then the
refusals: unsupported layers by name, untraceable forwards, bad arguments, a wrong graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript", reason="export_module needs onnxscript (train extra)")
pytestmark = pytest.mark.train

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from bilstm.core.errors import ExportError, ParityError  # noqa: E402
from bilstm.export import export_module  # noqa: E402
from bilstm.export.module import METADATA_KEY  # noqa: E402

# -- six module shapes ------------------------------------------------------------------------


class PackedClassifier(nn.Module):
    """Embedding -> packed 2-layer BiLSTM (lengths from the padding) -> max pool -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(30, 6, padding_idx=0)
        self.lstm = nn.LSTM(6, 5, num_layers=2, bidirectional=True, batch_first=True)
        self.out = nn.Linear(10, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = (ids != 0).sum(1)
        packed = pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        y, _ = self.lstm(packed)
        y, _ = pad_packed_sequence(y, batch_first=True, padding_value=-1e4)
        return self.out(y.max(1).values)


class CRFTaggerEncoder(nn.Module):
    """The encoder of a BiLSTM-CRF tagger: word embedding -> packed BiLSTM -> emission scores
    per token; the mask is an input (the CRF layer would read it too)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(40, 8, padding_idx=0)
        self.dropout = nn.Dropout(0.5)
        self.lstm = nn.LSTM(8, 4, bidirectional=True, batch_first=True)
        self.emissions = nn.Linear(8, 5)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.embedding(ids))
        packed = pack_padded_sequence(x, mask.sum(1).cpu(), batch_first=True, enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=ids.shape[1])
        return self.emissions(self.dropout(y))


class GRUSeqEncoder(nn.Module):
    """A seq2seq encoder (the classic tutorial): batches sorted longest first
    (enforce_sorted=True), bidirectional GRU, outputs plus a decoder's initial state."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(25, 6)
        self.gru = nn.GRU(6, 5, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(10, 7)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor) -> tuple[torch.Tensor, ...]:
        packed = pack_padded_sequence(self.embedding(src), src_len.cpu())
        outputs, hidden = self.gru(packed)
        outputs, _ = pad_packed_sequence(outputs, total_length=src.shape[0])
        state = torch.tanh(self.fc(torch.cat((hidden[-2], hidden[-1]), dim=1)))
        return outputs, state


class ProjectedLSTM(nn.Module):
    """LSTMP (`proj_size`): packed, 2 bidirectional layers, the final states as features."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(20, 6, padding_idx=0)
        self.lstm = nn.LSTM(6, 7, num_layers=2, bidirectional=True, batch_first=True, proj_size=3)
        self.out = nn.Linear(6, 2)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        packed = pack_padded_sequence(
            self.embedding(ids), lengths, batch_first=True, enforce_sorted=False
        )
        y, (h, c) = self.lstm(packed)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=ids.shape[1])
        return self.out(torch.cat((h[-2], h[-1]), dim=1)), y, c


class LengthsInput(nn.Module):
    """Float features plus a lengths tensor into an LSTM without biases; the initial states
    come from the data (so they are permuted with the packed order), the last real step of
    each row is gathered."""

    def __init__(self) -> None:
        super().__init__()
        self.init = nn.Linear(3, 2 * 4)
        self.lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True, bias=False)
        self.head = nn.Linear(4, 1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        start = torch.tanh(self.init(features[:, 0])).view(-1, 2, 4).transpose(0, 1).contiguous()
        packed = pack_padded_sequence(features, lengths, batch_first=True, enforce_sorted=False)
        y, _ = self.lstm(packed, (start, torch.zeros_like(start)))
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=features.shape[1])
        last = y[torch.arange(y.shape[0]), lengths - 1]
        return self.head(last).squeeze(-1)


class TimeMajorForecaster(nn.Module):
    """batch_first=False, no packing: windows [time, batch, features] of equal length, a
    BiLSTM, the last step's features -> the next value (a forecaster's usual shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(2, 4, bidirectional=True)
        self.head = nn.Linear(8, 1)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(window)
        return self.head(y[-1])


class SharedEncoder(nn.Module):
    """One unidirectional GRU used twice (a siamese pair): once packed, once unpacked."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(20, 4, padding_idx=0)
        self.gru = nn.GRU(4, 3, batch_first=True)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            self.embedding(a), (a != 0).sum(1), batch_first=True, enforce_sorted=False
        )
        _, h_a = self.gru(packed)
        _, h_b = self.gru(self.embedding(b))
        return (h_a[-1] * h_b[-1]).sum(-1)


def _ids(batch: int, time: int, vocab: int, lengths: list[int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, time), generator=g)
    for row, n in enumerate(lengths):
        ids[row, n:] = 0
    return ids


def _cases() -> dict[str, dict[str, Any]]:
    ids = _ids(4, 9, 30, [9, 3, 6, 1])
    tag_ids = _ids(3, 6, 40, [6, 2, 4])
    src = _ids(3, 8, 25, [8, 5, 2]).T.contiguous()  # time-major, sorted longest first
    lstmp_ids = _ids(3, 7, 20, [2, 7, 4])
    feats = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(1))
    return {
        "packed_classifier": dict(
            module=PackedClassifier(),
            inputs=(ids,),
            input_names=["ids"],
            output_names=["logits"],
            dynamic_axes={"ids": {0: "batch", 1: "time"}},
            check_inputs=[(_ids(2, 5, 30, [5, 4], 5),)],
        ),
        "crf_tagger_encoder": dict(
            module=CRFTaggerEncoder(),
            inputs=(tag_ids, tag_ids != 0),
            input_names=["ids", "mask"],
            output_names=["emissions"],
            dynamic_axes={"ids": {0: "batch", 1: "time"}, "mask": {0: "batch", 1: "time"}},
        ),
        "gru_seq_encoder": dict(
            module=GRUSeqEncoder(),
            inputs=(src, torch.tensor([8, 5, 2])),
            input_names=["src", "src_len"],
            output_names=["outputs", "state"],
            dynamic_shapes={
                "src": {0: torch.export.Dim("time"), 1: torch.export.Dim("batch")},
                "src_len": {0: torch.export.Dim("batch")},
            },
            lengths="src_len",
        ),
        "lstmp": dict(
            module=ProjectedLSTM(),
            inputs=(lstmp_ids, torch.tensor([2, 7, 4])),
            input_names=["ids", "lengths"],
            output_names=["logits", "sequence", "cell"],
            dynamic_axes={"ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
            lengths="lengths",
        ),
        "lengths_tensor": dict(
            module=LengthsInput(),
            inputs=(feats, torch.tensor([6, 2, 5, 3])),
            input_names=["features", "lengths"],
            output_names=["score"],
            dynamic_axes={"features": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
            lengths="lengths",
        ),
        "shared_encoder": dict(
            module=SharedEncoder(),
            inputs=(_ids(3, 5, 20, [5, 2, 4]), _ids(3, 7, 20, [7, 7, 7], 1)),
            input_names=["a", "b"],
            output_names=["similarity"],
            dynamic_axes={"a": {0: "batch", 1: "time"}, "b": {0: "batch"}},
        ),
        "time_major": dict(
            module=TimeMajorForecaster(),
            inputs=(torch.randn(12, 3, 2, generator=torch.Generator().manual_seed(2)),),
            input_names=["window"],
            output_names=["forecast"],
            dynamic_axes={"window": {0: "time", 1: "batch"}},
        ),
    }


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_module_exports_padding_exact(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    spec = dict(CASES[name])
    module, inputs = spec.pop("module"), spec.pop("inputs")
    out = tmp_path / f"{name}.onnx"
    report = export_module(module, inputs, out, reference_check=True, **spec)
    assert module.training  # the mode the module came in is restored
    module.eval()

    model = onnx.load(str(out))
    rnn = [n for n in model.graph.node if n.op_type in ("LSTM", "GRU")]
    layers = sum(r["num_layers"] * r["calls"] for r in report.rnns)  # per layer and call
    if name == "lstmp":
        assert not rnn and report.scan_nodes == 2 * layers
        assert sum(n.op_type == "Scan" for n in model.graph.node) == 2 * layers
    else:
        assert len(rnn) == layers == report.fused_nodes  # one fused node per layer
        assert all(len(n.input) >= 5 and n.input[4] for n in rnn)  # fed sequence_lens
    assert not [n for n in model.graph.node if n.domain]  # no placeholder left
    for value in model.graph.input:
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        assert set(dims) & {"batch", "time"}, (value.name, dims)

    # ONNX Runtime and onnx.reference, both against PyTorch, every output within 1e-5.
    rows = [c for c in report.parity.cases if c.case.startswith("onnx.reference")]
    batches = [c for c in report.parity.cases if c.case.startswith("random batch")]
    assert rows and batches and report.parity.ok
    assert {c.output for c in batches} == set(spec["output_names"])
    assert report.parity.max_abs < 1e-5
    shapes = {c.case for c in batches}
    assert len(shapes) == 3 and "example" in {c.case for c in report.parity.cases}
    assert report.parity.dev_examples == (2 if spec.get("check_inputs") else 0)
    meta = {p.key: p.value for p in model.metadata_props}
    assert '"parity"' in meta[METADATA_KEY]

    # The file on its own, at a shape never seen, ragged: same as the module.
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    case = next(c for c in report.parity.cases if c.case == "example")
    assert case.max_abs < 1e-5
    feeds = _ragged_feeds(name, inputs)
    got = session.run(None, {k: v.numpy() for k, v in feeds.items()})
    with torch.no_grad():
        want = module(*feeds.values())
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=1e-5)


def _ragged_feeds(name: str, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """Six rows of 13 steps with lengths 13, 1, 5, 13, 2, 8 (longest first where sorted)."""
    lengths = [13, 1, 5, 13, 2, 8]
    if name == "gru_seq_encoder":
        lengths = sorted(lengths, reverse=True)
        return {"src": _ids(6, 13, 25, lengths, 9).T.contiguous(), "src_len": torch.tensor(lengths)}
    if name == "time_major":
        return {"window": torch.randn(13, 6, 2)}
    if name == "shared_encoder":
        return {"a": _ids(6, 13, 20, lengths, 9), "b": _ids(6, 7, 20, [7] * 6, 3)}
    if name == "lengths_tensor":
        x = torch.randn(6, 13, 3)
        return {"features": x, "lengths": torch.tensor(lengths)}
    vocab = {"packed_classifier": 30, "crf_tagger_encoder": 40, "lstmp": 20}[name]
    ids = _ids(6, 13, vocab, lengths, 9)
    if name == "crf_tagger_encoder":
        return {"ids": ids, "mask": ids != 0}
    if name == "lstmp":
        return {"ids": ids, "lengths": torch.tensor(lengths)}
    return {"ids": ids}


# -- refusals ---------------------------------------------------------------------------------


class ElmanRNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Identity())
        self.encoder.add_module("rnn", nn.RNN(3, 4, batch_first=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.rnn(x)[0]


class CellLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = x.new_zeros(x.shape[0], 4)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
        return h


class ListLengths(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.tolist(), batch_first=True, enforce_sorted=False)
        return self.lstm(packed)[1][0]


FEATURES = {"x": {0: "batch", 1: "time"}}


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (ElmanRNN(), "layer 'encoder.rnn' (RNN): nn.RNN"),
        (CellLoop(), "layer 'cell' (LSTMCell)"),
        (nn.Sequential(nn.Linear(3, 3)), "has no nn.LSTM or nn.GRU"),
    ],
)
def test_unsupported_layers_are_named(module: nn.Module, message: str, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        export_module(
            module,
            (torch.randn(2, 5, 3),),
            tmp_path / "m.onnx",
            input_names=["x"],
            output_names=["y"],
            dynamic_axes=FEATURES,
        )
    assert not (tmp_path / "m.onnx").exists()


def test_lengths_as_python_list_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"lengths\.tolist\(\)"):
        export_module(
            ListLengths(),
            (torch.randn(3, 5, 3), torch.tensor([5, 2, 4])),
            tmp_path / "m.onnx",
            input_names=["x", "lengths"],
            output_names=["h"],
            dynamic_axes={**FEATURES, "lengths": {0: "batch"}},
            lengths="lengths",
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"output_names": ["a", "b"]}, "returns 1 tensor"),
        ({"input_names": ["x", "y"]}, "2 name"),
        ({"dynamic_axes": None}, "give the dynamic axes once"),
        ({"dynamic_axes": {"x": {0: "rows"}}}, "named 'rows'"),
        ({"lengths": "n"}, "not one of input_names"),
        ({"opset": 17}, "opset 17 is not supported"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str, tmp_path: Path) -> None:
    args: dict[str, Any] = {
        "input_names": ["x"],
        "output_names": ["y"],
        "dynamic_axes": {"x": {1: "time", 0: "batch"}},
    } | kwargs
    with pytest.raises(ExportError, match=message):
        export_module(TimeMajorForecaster(), (torch.randn(6, 2, 2),), tmp_path / "m.onnx", **args)
    assert not (tmp_path / "m.onnx").exists()


def test_example_of_size_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="at least 2"):
        export_module(
            TimeMajorForecaster(),
            (torch.randn(6, 1, 2),),
            tmp_path / "m.onnx",
            input_names=["window"],
            output_names=["y"],
            dynamic_axes={"window": {0: "time", 1: "batch"}},
        )


def test_a_wrong_graph_raises_parity_error_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check is real: weights in PyTorch's gate order (the classic mistake) must fail."""
    from bilstm.export import module_lower

    def pytorch_order(state: Any, prefix: str, cell: str, suffixes: Any) -> Any:
        w = np.stack([state[f"weight_ih{s}"].numpy() for s in suffixes])
        r = np.stack([state[f"weight_hh{s}"].numpy() for s in suffixes])
        b = np.stack(
            [np.concatenate([state[f"bias_ih{s}"], state[f"bias_hh{s}"]]) for s in suffixes]
        )
        return w, r, b

    monkeypatch.setattr(module_lower, "rnn_weights", pytorch_order)
    out = tmp_path / "wrong.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(ParityError, match="differs from PyTorch"):
        export_module(
            TimeMajorForecaster(),
            (torch.randn(6, 2, 2),),
            out,
            input_names=["window"],
            output_names=["y"],
            dynamic_axes={"window": {0: "time", 1: "batch"}},
        )
    assert out.read_bytes() == b"keep me"


def test_existing_output_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    with pytest.raises(Exception, match="--force"):
        export_module(
            TimeMajorForecaster(),
            (torch.randn(6, 2, 2),),
            out,
            input_names=["window"],
            output_names=["y"],
            dynamic_axes={"window": {0: "time", 1: "batch"}},
            force=False,
        )
    assert out.read_bytes() == b"old"


# -- the command --------------------------------------------------------------------------------

USER_MODELS = """
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class Tagger(nn.Module):
    def __init__(self, vocab_size, tags=4):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 6, padding_idx=0)
        self.lstm = nn.LSTM(6, 5, bidirectional=True, batch_first=True)
        self.out = nn.Linear(10, tags)

    def forward(self, ids, lengths):
        x = pack_padded_sequence(self.embedding(ids), lengths, batch_first=True,
                                 enforce_sorted=False)
        y, _ = pad_packed_sequence(self.lstm(x)[0], batch_first=True, total_length=ids.shape[1])
        return self.out(y)


def build(vocab_size=30):
    return Tagger(vocab_size)
"""


@pytest.fixture()
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's model file and its state dict, as `torch.save(model.state_dict())` writes it."""
    (tmp_path / "user_models_export.py").write_text(USER_MODELS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("user_models_export").build(vocab_size=30)
    torch.save(module.state_dict(), tmp_path / "weights.pt")
    return tmp_path


def _cli(*args: object) -> Any:
    from typer.testing import CliRunner

    from bilstm.export.module_cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_exports_a_factory_with_its_state_dict(user_package: Path) -> None:
    out = user_package / "tagger.onnx"
    run = _cli(
        "user_models_export:build",
        user_package / "weights.pt",
        out,
        "--input",
        "ids=int64[batch,time]:1..29",
        "--input",
        "lengths=lengths",
        "--output",
        "scores",
        "--factory-kwargs",
        '{"vocab_size": 30}',
    )
    assert run.exit_code == 0, run.output
    assert "1 fused RNN node(s)" in run.stderr and "parity random batch=5 time=11" in run.stderr
    model = onnx.load(str(out))
    assert [n.op_type for n in model.graph.node].count("LSTM") == 1
    assert [i.name for i in model.graph.input] == ["ids", "lengths"]
    # an existing OUT is kept without --force
    again = _cli(
        "user_models_export:build",
        user_package / "weights.pt",
        out,
        "--input",
        "ids=int64[batch,time]:1..29",
        "--input",
        "lengths=lengths",
        "--output",
        "scores",
    )
    assert again.exit_code == 2 and "--force" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "ids=int64[batch,time]", "--input", "lengths=lengths"], "range of valid ids"),
        (["--input", "ids=int64[rows,time]:1..29"], "axis 'rows'"),
        (["--input", "ids:int64"], "expected NAME=DTYPE"),
        (["--input", "ids=int64[batch,time]:1..29", "--factory-kwargs", "[1]"], "JSON object"),
    ],
)
def test_cli_input_errors(user_package: Path, args: list[str], message: str) -> None:
    run = _cli(
        "user_models_export:build",
        user_package / "weights.pt",
        user_package / "m.onnx",
        *args,
        "--output",
        "scores",
    )
    assert run.exit_code == 2 and message in run.stderr, run.output
    assert not (user_package / "m.onnx").exists()


def test_cli_refuses_weights_that_do_not_fit_or_are_pickled(user_package: Path) -> None:
    spec = ["--input", "ids=int64[batch,time]:1..29", "--input", "lengths=lengths"]
    run = _cli(
        "user_models_export:build",
        user_package / "weights.pt",
        user_package / "m.onnx",
        *spec,
        "--output",
        "scores",
        "--factory-kwargs",
        '{"vocab_size": 31}',
    )
    assert run.exit_code == 2 and "does not fit user_models_export:build" in run.stderr
    import importlib

    whole = user_package / "whole.pt"
    torch.save(importlib.import_module("user_models_export").build(), whole)  # a pickled module
    run = _cli(
        "user_models_export:build", whole, user_package / "m.onnx", *spec, "--output", "scores"
    )
    assert run.exit_code == 2 and "weights_only=True" in run.stderr
    run = _cli("user_models_export:nothing", whole, user_package / "m.onnx", *spec, "--output", "s")
    assert run.exit_code == 2 and "has no nothing" in run.stderr


def test_missing_onnxscript_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxscript" else find_spec(name, *a),
    )
    with pytest.raises(ExportError, match="needs onnxscript"):
        export_module(
            TimeMajorForecaster(),
            (torch.randn(6, 2, 2),),
            tmp_path / "m.onnx",
            input_names=["window"],
            output_names=["y"],
            dynamic_axes={"window": {0: "time", 1: "batch"}},
        )
