"""The building blocks of the id graph: fused RNN layers, pooling, embeddings, dense heads.

Every task's graph (export/task_*.py) is assembled from these by `build_graph`
(export/graph.py); weights arrive in PyTorch's layout and leave in ONNX's.
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

BATCH = "batch"
TIME = "time"

# PyTorch packs gates as (i, f, g, o) for LSTM and (r, z, n) for GRU; ONNX wants (i, o, f, c)
# and (z, r, h). Index lists select PyTorch gate blocks in ONNX order.
_GATE_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}


def as_array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _gates(w: np.ndarray, cell: str) -> np.ndarray:
    blocks = np.split(w, len(_GATE_ORDER[cell]), axis=0)
    return np.concatenate([blocks[i] for i in _GATE_ORDER[cell]], axis=0)


def rnn_weights(
    state: dict[str, torch.Tensor],
    prefix: str,
    cell: str,
    suffixes: tuple[str, ...] = ("_l0", "_l0_reverse"),
) -> tuple[np.ndarray, ...]:
    """ONNX W [D, G*H, in], R [D, G*H, H], B [D, 2*G*H] of one PyTorch layer.

    `suffixes`: the parameter name suffix of each direction (forward first), as PyTorch
    names them: `_l0, _l0_reverse` for layer 0 of a bidirectional layer stack.
    """
    ws, rs, bs = [], [], []
    for suffix in suffixes:
        ws.append(_gates(as_array(state[f"{prefix}weight_ih{suffix}"]), cell))
        rs.append(_gates(as_array(state[f"{prefix}weight_hh{suffix}"]), cell))
        bs.append(
            np.concatenate(
                [
                    _gates(as_array(state[f"{prefix}bias_ih{suffix}"]), cell),
                    _gates(as_array(state[f"{prefix}bias_hh{suffix}"]), cell),
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


def encoder(
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


def pool(
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
                    g.op("MatMul", [y, g.const("att_w", as_array(state["attention.weight"]).T)]),
                    g.const("att_b", as_array(state["attention.bias"])),
                ],
            )
        ],
    )
    scores = g.op("MatMul", [hidden, g.const("att_v", as_array(state["attention_score.weight"]).T)])
    weights = g.op("Softmax", [g.op("Where", [mask3, scores, neg_inf])], axis=0)
    return g.reduce("ReduceSum", g.op("Mul", [weights, y]), [0])


def char_features(
    g: GraphBuilder, cfg: ModelConfig, state: dict[str, torch.Tensor], ids: str
) -> str:
    """char_ids [batch, time, chars] -> [batch, time, filters] (embedding, Conv, ReLU, max)."""
    w = cfg.max_word_length
    emb = g.op(
        "Gather",
        [
            g.const("char_embedding", as_array(state["embedder.chars.embedding.weight"])),
            md.CHAR_IDS,
        ],
        axis=0,
    )  # [b, t, w, c]
    flat = g.op("Reshape", [emb, g.const("shape", np.array([-1, w, cfg.char_dim], np.int64))])
    conv = g.op(
        "Conv",
        [
            g.op("Transpose", [flat], perm=[0, 2, 1]),
            g.const("char_conv_w", as_array(state["embedder.chars.conv.weight"])),
            g.const("char_conv_b", as_array(state["embedder.chars.conv.bias"])),
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


def token_features(
    g: GraphBuilder, cfg: ModelConfig, state: dict[str, torch.Tensor], prefix: str
) -> str:
    """Word embedding `prefix` (+ character features) of input_ids, time-major [time, batch, D]."""
    x = g.op(
        "Gather", [g.const("embedding", as_array(state[f"{prefix}.weight"])), md.INPUT_IDS], axis=0
    )
    if cfg.char_vocab_size:
        x = g.op("Concat", [x, char_features(g, cfg, state, md.INPUT_IDS)], axis=2)
    return str(g.op("Transpose", [x], perm=[1, 0, 2]))  # ONNX RNNs take layout 0


def dense(g: GraphBuilder, state: dict[str, torch.Tensor], x: str, out: str) -> str:
    """Linear layer `output` on [..., D] (MatMul + Add keeps any leading axes)."""
    y = g.op("MatMul", [x, g.const("out_w", as_array(state["output.weight"]).T)])
    return str(g.op("Add", [y, g.const("out_b", as_array(state["output.bias"]))], [out]))


def io(name: str, elem: int, dims: list[str | int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, dims)
