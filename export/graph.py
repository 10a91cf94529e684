"""Writes the ONNX graph of a bilstm model directly from its weights.

Why not `torch.onnx.export`: the TorchScript exporter is deprecated, and the dynamo exporter
cannot trace packed sequences and emits no `sequence_lens` (docs/export-notes.md 1-2). The
architectures here are few and fixed, so the graph is written node by node: one fused
bidirectional `LSTM`/`GRU` node per layer fed `sequence_lens` from the `lengths` input, dynamic
`batch` and `time` axes everywhere, weights already in ONNX gate order (no run-time reordering,
so quantisation sees plain initializers). Parity against PyTorch is checked after every export.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from bilstm.export.builder import GraphBuilder
from bilstm.export.projection import projected_layer
from bilstm.models.config import ModelConfig
from bilstm.runtime import metadata as md

DEFAULT_OPSET = 17
MIN_OPSET = 14
MAX_OPSET = 21
BATCH = "batch"
TIME = "time"

# PyTorch packs gates as (i, f, g, o) for LSTM and (r, z, n) for GRU; ONNX wants (i, o, f, c)
# and (z, r, h). Index lists select PyTorch gate blocks in ONNX order.
_GATE_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _gates(w: np.ndarray, cell: str) -> np.ndarray:
    blocks = np.split(w, len(_GATE_ORDER[cell]), axis=0)
    return np.concatenate([blocks[i] for i in _GATE_ORDER[cell]], axis=0)


def rnn_weights(state: dict[str, torch.Tensor], prefix: str, cell: str) -> tuple[np.ndarray, ...]:
    """ONNX W [2, G*H, in], R [2, G*H, H], B [2, 2*G*H] of one PyTorch bidirectional layer."""
    ws, rs, bs = [], [], []
    for suffix in ("_l0", "_l0_reverse"):
        ws.append(_gates(_np(state[f"{prefix}weight_ih{suffix}"]), cell))
        rs.append(_gates(_np(state[f"{prefix}weight_hh{suffix}"]), cell))
        bs.append(
            np.concatenate(
                [
                    _gates(_np(state[f"{prefix}bias_ih{suffix}"]), cell),
                    _gates(_np(state[f"{prefix}bias_hh{suffix}"]), cell),
                ]
            )
        )
    return np.stack(ws), np.stack(rs), np.stack(bs)


def _merge_sequence(g: GraphBuilder, y: str, mode: str) -> str:
    """Y [time, 2, batch, H] -> [time, batch, D]."""
    if mode == "concat":
        t = g.op("Transpose", [y], perm=[0, 2, 1, 3])
        return str(g.op("Reshape", [t, g.const("shape", np.array([0, 0, -1], np.int64))]))
    return g.reduce({"sum": "ReduceSum", "ave": "ReduceMean", "mul": "ReduceProd"}[mode], y, [1])


def _merge_final(g: GraphBuilder, h: str, mode: str) -> str:
    """Y_h [2, batch, H] -> [batch, D]."""
    if mode == "concat":
        t = g.op("Transpose", [h], perm=[1, 0, 2])
        return str(g.op("Reshape", [t, g.const("shape", np.array([0, -1], np.int64))]))
    return g.reduce({"sum": "ReduceSum", "ave": "ReduceMean", "mul": "ReduceProd"}[mode], h, [0])


def _merge_pair(g: GraphBuilder, a: str, b: str, mode: str) -> str:
    """Combine two per-direction tensors along the last axis (concat) or elementwise."""
    if mode == "concat":
        return str(g.op("Concat", [a, b], axis=-1))
    if mode == "ave":
        return str(g.op("Mul", [g.op("Add", [a, b]), g.const("half", np.array(0.5, np.float32))]))
    return str(g.op({"sum": "Add", "mul": "Mul"}[mode], [a, b]))


def _valid_mask(g: GraphBuilder, x: str) -> str:
    """Bool [time, batch, 1]: True at real positions of time-major x [time, batch, ...]."""
    time = g.op("Gather", [g.op("Shape", [x]), g.const("zero", np.array(0, np.int64))], axis=0)
    steps = g.op(
        "Range",
        [g.const("zero", np.array(0, np.int64)), time, g.const("one", np.array(1, np.int64))],
    )
    mask = g.op("Less", [g.unsqueeze(steps, [1]), g.unsqueeze(md.LENGTHS, [0])])
    return g.unsqueeze(mask, [2])


def _encoder(
    g: GraphBuilder, cfg: ModelConfig, state: dict[str, torch.Tensor], x: str, seq_lens: str
) -> tuple[str, str]:
    """Stacked bidirectional RNN layers over x [time, batch, in] -> (y, final).

    Each layer is one fused `LSTM`/`GRU` node fed `sequence_lens`; LSTMs with projections,
    which ONNX's LSTM cannot express, are lowered to `Scan` (export/projection.py).
    """
    y = final = x
    valid = _valid_mask(g, x) if cfg.proj_size else ""
    for layer in range(cfg.num_layers):
        prefix = f"encoder.layers.{layer}."
        if cfg.proj_size:
            (fwd, bwd), (h_f, h_b) = projected_layer(
                g, state, prefix, layer, y, md.LENGTHS, valid, cfg.hidden_size, cfg.proj_size
            )
            y = _merge_pair(g, fwd, bwd, cfg.merge)
            final = _merge_pair(g, h_f, h_b, cfg.merge)
            continue
        w, r, b = rnn_weights(state, prefix, cfg.cell)
        ins = [
            y,
            g.const(f"W{layer}", w),
            g.const(f"R{layer}", r),
            g.const(f"B{layer}", b),
            seq_lens,
        ]
        attrs: dict[str, Any] = {
            "direction": "bidirectional",
            "hidden_size": cfg.hidden_size,
            "layout": 0,
        }
        if cfg.cell == "gru":
            # PyTorch applies the reset gate after the recurrent matmul.
            attrs["linear_before_reset"] = 1
            seq, h = g.op("GRU", ins, 2, **attrs)
        else:
            seq, h, _ = g.op("LSTM", ins, 3, **attrs)
        y = _merge_sequence(g, seq, cfg.merge)
        final = _merge_final(g, h, cfg.merge)
    return y, final


def _pool(
    g: GraphBuilder,
    cfg: ModelConfig,
    state: dict[str, torch.Tensor],
    y: str,
    final: str,
    ids: str,
    lengths: str,
) -> str:
    """Sequence features y [time, batch, D] -> [batch, D], masked by lengths."""
    if cfg.pooling == "last":
        return final
    time = g.op("Gather", [g.op("Shape", [ids]), g.const("one", np.array(1, np.int64))], axis=0)
    steps = g.op(
        "Range",
        [g.const("zero", np.array(0, np.int64)), time, g.const("one", np.array(1, np.int64))],
    )
    mask = g.op("Less", [g.unsqueeze(steps, [1]), g.unsqueeze(lengths, [0])])  # [time, batch]
    mask3 = g.unsqueeze(mask, [2])
    if cfg.pooling == "mean":
        summed = g.reduce(
            "ReduceSum", g.op("Mul", [y, g.op("Cast", [mask3], to=TensorProto.FLOAT)]), [0]
        )
        count = g.op("Cast", [g.unsqueeze(lengths, [1])], to=TensorProto.FLOAT)
        return str(g.op("Div", [summed, count]))
    neg_inf = g.const("neg_inf", np.array(-np.inf, np.float32))
    if cfg.pooling == "max":
        return g.reduce("ReduceMax", g.op("Where", [mask3, y, neg_inf]), [0])
    hidden = g.op(
        "Tanh",
        [
            g.op(
                "Add",
                [
                    g.op("MatMul", [y, g.const("att_w", _np(state["attention.weight"]).T)]),
                    g.const("att_b", _np(state["attention.bias"])),
                ],
            )
        ],
    )
    scores = g.op("MatMul", [hidden, g.const("att_v", _np(state["attention_score.weight"]).T)])
    weights = g.op("Softmax", [g.op("Where", [mask3, scores, neg_inf])], axis=0)
    return g.reduce("ReduceSum", g.op("Mul", [weights, y]), [0])


def _char_features(
    g: GraphBuilder, cfg: ModelConfig, state: dict[str, torch.Tensor], ids: str
) -> str:
    """char_ids [batch, time, chars] -> [batch, time, filters] (embedding, Conv, ReLU, max)."""
    w = cfg.max_word_length
    emb = g.op(
        "Gather",
        [g.const("char_embedding", _np(state["embedder.chars.embedding.weight"])), md.CHAR_IDS],
        axis=0,
    )  # [b, t, w, c]
    flat = g.op("Reshape", [emb, g.const("shape", np.array([-1, w, cfg.char_dim], np.int64))])
    conv = g.op(
        "Conv",
        [
            g.op("Transpose", [flat], perm=[0, 2, 1]),
            g.const("char_conv_w", _np(state["embedder.chars.conv.weight"])),
            g.const("char_conv_b", _np(state["embedder.chars.conv.bias"])),
        ],
        kernel_shape=[cfg.char_kernel],
        pads=[cfg.char_kernel // 2] * 2,
    )
    pooled = g.reduce("ReduceMax", g.op("Relu", [conv]), [2])  # [b*t, filters]
    shape = g.op(
        "Concat",
        [g.op("Shape", [ids]), g.const("filters", np.array([cfg.char_filters], np.int64))],
        axis=0,
    )
    return str(g.op("Reshape", [pooled, shape]))


def _token_features(g: GraphBuilder, cfg: ModelConfig, state: dict[str, torch.Tensor]) -> str:
    """Word embedding (+ character features) of input_ids, time-major [time, batch, D]."""
    prefix = "embedding" if cfg.task == "classify" else "embedder.embedding"
    x = g.op("Gather", [g.const("embedding", _np(state[f"{prefix}.weight"])), md.INPUT_IDS], axis=0)
    if cfg.char_vocab_size:
        x = g.op("Concat", [x, _char_features(g, cfg, state, md.INPUT_IDS)], axis=2)
    return str(g.op("Transpose", [x], perm=[1, 0, 2]))  # ONNX RNNs take layout 0


def _dense(g: GraphBuilder, state: dict[str, torch.Tensor], x: str, out: str) -> str:
    """Linear layer `output` on [..., D] (MatMul + Add keeps any leading axes)."""
    y = g.op("MatMul", [x, g.const("out_w", _np(state["output.weight"]).T)])
    return str(g.op("Add", [y, g.const("out_b", _np(state["output.bias"]))], [out]))


def _io(name: str, elem: int, dims: list[str | int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, dims)


def build_graph(
    cfg: ModelConfig, state: dict[str, torch.Tensor], opset: int = DEFAULT_OPSET
) -> onnx.ModelProto:
    """The ONNX model of any bilstm task, inputs/outputs as in docs/model-file.md."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be within {MIN_OPSET}..{MAX_OPSET}, got {opset}")
    g = GraphBuilder(opset)
    i64, f32 = TensorProto.INT64, TensorProto.FLOAT
    seq_lens = g.op("Cast", [md.LENGTHS], to=TensorProto.INT32)
    inputs = [_io(md.LENGTHS, i64, [BATCH])]
    n = cfg.num_labels
    if cfg.task == "forecast":
        inputs.insert(0, _io(md.FEATURES, f32, [BATCH, TIME, cfg.num_features]))
        scaled = g.op(
            "Div",
            [
                g.op("Sub", [md.FEATURES, g.const("mean", _np(state["feature_mean"]))]),
                g.const("std", _np(state["feature_std"])),
            ],
        )
        _, final = _encoder(g, cfg, state, g.op("Transpose", [scaled], perm=[1, 0, 2]), seq_lens)
        y = g.op("MatMul", [final, g.const("out_w", _np(state["output.weight"]).T)])
        y = g.op("Add", [y, g.const("out_b", _np(state["output.bias"]))])
        y = g.op("Mul", [y, g.const("target_std", _np(state["target_std"]))])
        g.op("Add", [y, g.const("target_mean", _np(state["target_mean"]))], [md.FORECAST])
        outputs = [_io(md.FORECAST, f32, [BATCH, n])]
    else:
        inputs.insert(0, _io(md.INPUT_IDS, i64, [BATCH, TIME]))
        if cfg.char_vocab_size:
            inputs.append(_io(md.CHAR_IDS, i64, [BATCH, TIME, cfg.max_word_length]))
        y, final = _encoder(g, cfg, state, _token_features(g, cfg, state), seq_lens)
        if cfg.task == "classify":
            pooled = _pool(g, cfg, state, y, final, md.INPUT_IDS, md.LENGTHS)
            _dense(g, state, pooled, md.LOGITS)
            out_dims: list[str | int] = [BATCH, n]
        elif cfg.task == "tag":
            _dense(g, state, g.op("Transpose", [y], perm=[1, 0, 2]), md.LOGITS)
            out_dims = [BATCH, TIME, n]
        else:  # cloze: the features at each row's mask position
            inputs.append(_io(md.MASK_POSITIONS, i64, [BATCH]))
            picked = g.op(
                "GatherND",
                [g.op("Transpose", [y], perm=[1, 0, 2]), g.unsqueeze(md.MASK_POSITIONS, [1])],
                batch_dims=1,
            )
            _dense(g, state, picked, md.LOGITS)
            out_dims = [BATCH, n]
        g.op("Softmax", [md.LOGITS], [md.PROBABILITIES], axis=len(out_dims) - 1)
        outputs = [_io(md.LOGITS, f32, out_dims), _io(md.PROBABILITIES, f32, out_dims)]

    graph = helper.make_graph(
        g.nodes, f"bilstm_{cfg.task}", inputs=inputs, outputs=outputs, initializer=g.initializers
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="bilstm"
    )
    # ORT 1.17+ reads IR version 9 at most for opset <= 21; pin it rather than take onnx's newest.
    model.ir_version = 8 if opset <= 18 else 9
    return model


def check_graph(model: onnx.ModelProto, cfg: ModelConfig) -> None:
    """Fail loudly if the graph breaks the contract: fused RNN nodes, lengths, dynamic axes."""
    from bilstm.runtime.errors import ExportError

    onnx.checker.check_model(model, full_check=True)
    rnn = [n for n in model.graph.node if n.op_type in ("LSTM", "GRU")]
    if cfg.proj_size:
        scans = [n for n in model.graph.node if n.op_type == "Scan"]
        if len(scans) != 2 * cfg.num_layers or rnn:
            raise ExportError(
                f"expected {2 * cfg.num_layers} Scan nodes for the projected "
                f"LSTM layers, found {len(scans)}"
            )
    elif len(rnn) != cfg.num_layers:
        raise ExportError(f"expected {cfg.num_layers} fused RNN node(s), found {len(rnn)}")
    for node in rnn:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("direction") != b"bidirectional" or attrs.get("layout", 0) != 0:
            raise ExportError(f"RNN node {node.name} is not bidirectional with layout 0")
        if len(node.input) < 5 or not node.input[4]:
            raise ExportError(f"RNN node {node.name} has no sequence_lens input")
    for value in [*model.graph.input, *model.graph.output]:
        first = value.type.tensor_type.shape.dim[0]
        if first.dim_param != BATCH:
            raise ExportError(f"'{value.name}' has a fixed batch axis")
        if (
            value.name in (md.INPUT_IDS, md.FEATURES)
            and value.type.tensor_type.shape.dim[1].dim_param != TIME
        ):
            raise ExportError(f"'{value.name}' has a fixed time axis")
