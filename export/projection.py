"""LSTM with projections (`proj_size > 0`) lowered to ONNX `Scan`, since the ONNX `LSTM`
operator has no projection and no PyTorch exporter writes one (docs/export-notes.md 3).

Per direction: the input projection for all steps is one MatMul outside the loop; a `Scan`
runs the recurrence (gates, cell, projected hidden state) step by step. Steps past a row's
length keep the state and output zeros, so the forward final state is the one after the last
real token. The reverse direction reverses each row within its length (`ReverseSequence`),
runs the same recurrence and reverses the outputs back: padding never reaches it.
"""

from __future__ import annotations

import numpy as np
import torch
from onnx import TensorProto, helper

from bilstm.export.builder import GraphBuilder


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _recurrence(
    g: GraphBuilder,
    tag: str,
    r: np.ndarray,
    w_hr: np.ndarray,
    hidden: int,
) -> helper.GraphProto:
    """Scan body: (h, c, xw_t, valid_t) -> (h', c', y_t); PyTorch gate order i, f, g, o."""
    body = GraphBuilder(g.opset, prefix=f"{tag}_")
    gates = body.op("Add", ["xw_t", body.op("MatMul", ["h_prev", g.const(f"{tag}_R", r.T)])])
    i, f, cand, o = body.op(
        "Split", [gates, g.const(f"{tag}_split", np.array([hidden] * 4, np.int64))], 4, axis=1
    )
    c_new = body.op(
        "Add",
        [
            body.op("Mul", [body.op("Sigmoid", [f]), "c_prev"]),
            body.op("Mul", [body.op("Sigmoid", [i]), body.op("Tanh", [cand])]),
        ],
    )
    h_full = body.op("Mul", [body.op("Sigmoid", [o]), body.op("Tanh", [c_new])])
    h_new = body.op("MatMul", [h_full, g.const(f"{tag}_Whr", w_hr.T)])
    body.op("Where", ["valid_t", h_new, "h_prev"], ["h_out"])
    body.op("Where", ["valid_t", c_new, "c_prev"], ["c_out"])
    body.op("Mul", [h_new, body.op("Cast", ["valid_t"], to=TensorProto.FLOAT)], ["y_t"])
    f32 = TensorProto.FLOAT
    proj = w_hr.shape[0]
    return helper.make_graph(
        body.nodes,
        f"{tag}_body",
        inputs=[
            helper.make_tensor_value_info("h_prev", f32, None),
            helper.make_tensor_value_info("c_prev", f32, None),
            helper.make_tensor_value_info("xw_t", f32, None),
            helper.make_tensor_value_info("valid_t", TensorProto.BOOL, None),
        ],
        outputs=[
            helper.make_tensor_value_info("h_out", f32, [None, proj]),
            helper.make_tensor_value_info("c_out", f32, [None, hidden]),
            helper.make_tensor_value_info("y_t", f32, [None, proj]),
        ],
    )


def projected_layer(
    g: GraphBuilder,
    state: dict[str, torch.Tensor],
    prefix: str,
    layer: int,
    x: str,
    lengths: str,
    valid: str,
    hidden: int,
    proj: int,
) -> tuple[tuple[str, str], tuple[str, str]]:
    """One bidirectional projected LSTM layer over x [time, batch, in].

    `valid` is a bool [time, batch, 1] mask of real positions. Returns the per-direction
    sequences ([time, batch, proj] each) and final states ([batch, proj] each).
    """
    zeros_h = zero_state(g, lengths, proj)
    zeros_c = zero_state(g, lengths, hidden)
    seqs, finals = [], []
    for suffix, reverse in (("_l0", False), ("_l0_reverse", True)):
        y, h, _ = projected_direction(
            g,
            state,
            prefix,
            suffix,
            f"proj{layer}{'r' if reverse else 'f'}",
            x,
            lengths,
            valid,
            (zeros_h, zeros_c),
            reverse,
        )
        seqs.append(y)
        finals.append(h)
    return (seqs[0], seqs[1]), (finals[0], finals[1])


def zero_state(g: GraphBuilder, lengths: str, size: int) -> str:
    """Zeros [batch, size], batch taken from `lengths` [batch]."""
    batch = g.op("Shape", [lengths])
    return str(
        g.op(
            "ConstantOfShape",
            [g.op("Concat", [batch, g.const("size", np.array([size], np.int64))], axis=0)],
            value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
        )
    )


def projected_direction(
    g: GraphBuilder,
    state: dict[str, torch.Tensor],
    prefix: str,
    suffix: str,
    tag: str,
    x: str,
    lengths: str,
    valid: str,
    initial: tuple[str, str],
    reverse: bool,
) -> tuple[str, str, str]:
    """One direction of a projected LSTM layer: PyTorch parameters `{prefix}weight_ih{suffix}`
    etc., initial (h [batch, proj], c [batch, hidden]); returns (y [time, batch, proj],
    final h [batch, proj], final c [batch, hidden]). `tag` must be unique in the graph."""
    hidden = int(state[f"{prefix}weight_hr{suffix}"].shape[1])  # weight_hr: [proj, hidden]
    w = _np(state[f"{prefix}weight_ih{suffix}"])
    bias = _np(state[f"{prefix}bias_ih{suffix}"]) + _np(state[f"{prefix}bias_hh{suffix}"])
    xw = g.op("Add", [g.op("MatMul", [x, g.const(f"{tag}_W", w.T)]), g.const(f"{tag}_B", bias)])
    if reverse:
        xw = g.op("ReverseSequence", [xw, lengths], batch_axis=1, time_axis=0)
    body = _recurrence(
        g,
        tag,
        _np(state[f"{prefix}weight_hh{suffix}"]),
        _np(state[f"{prefix}weight_hr{suffix}"]),
        hidden,
    )
    h, c, y = g.op("Scan", [initial[0], initial[1], xw, valid], 3, num_scan_inputs=2, body=body)
    if reverse:
        y = g.op("ReverseSequence", [y, lengths], batch_axis=1, time_axis=0)
    return str(y), str(h), str(c)
