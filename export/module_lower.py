"""Placeholder RNN nodes (export/module_rnn.py) -> fused ONNX `LSTM`/`GRU` nodes with lengths.

Each `bilstm.module::RNN` node in the traced graph stands for one call of one `nn.LSTM` /
`nn.GRU`. It becomes, per layer, one fused node fed `sequence_lens` (weights as initializers,
already in ONNX gate order: docs/export-notes.md 1, 4, 6), or for `proj_size` layers the
`Scan` lowering of export/projection.py, one per direction (export-notes 3). The layers'
outputs are merged as PyTorch merges them (directions concatenated on the feature axis,
states stacked as [layers * directions, batch, hidden]).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from bilstm.core.errors import ExportError
from bilstm.export.builder import GraphBuilder
from bilstm.export.layers import rnn_weights
from bilstm.export.module_rnn import PLACEHOLDER_DOMAIN, PLACEHOLDER_OP, RNNSite
from bilstm.export.projection import projected_direction


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The layer's parameters by PyTorch name, with zero biases for `bias=False`."""
    state = {k: v.detach() for k, v in module.state_dict().items()}
    for name in list(state):
        if name.startswith("weight_ih"):
            bias = name.replace("weight_ih", "bias_ih")
            if bias not in state:
                rows = state[name].shape[0]
                state[bias] = torch.zeros(rows)
                state[bias.replace("bias_ih", "bias_hh")] = torch.zeros(rows)
    return state


class _Lowering:
    """Builds the replacement of every placeholder in one model."""

    def __init__(self, sites: Mapping[str, RNNSite], opset: int) -> None:
        self.sites = sites
        self.g = GraphBuilder(opset, prefix="bilstm_rnn_")
        self.weights: dict[tuple[str, int], list[str]] = {}
        self.scans = 0

    def _slice_states(self, states: str, start: int, count: int) -> str:
        """states[start:start+count] on axis 0 ([layers*dirs, batch, H] -> [count, batch, H])."""
        g = self.g
        return str(
            g.op(
                "Slice",
                [
                    states,
                    g.const("start", np.array([start], np.int64)),
                    g.const("end", np.array([start + count], np.int64)),
                    g.const("axis", np.array([0], np.int64)),
                ],
            )
        )

    def _merge(self, y: str) -> str:
        """ONNX Y [time, dirs, batch, H] -> [time, batch, dirs*H] (PyTorch's layout)."""
        g = self.g
        t = g.op("Transpose", [y], perm=[0, 2, 1, 3])
        return str(g.op("Reshape", [t, g.const("shape", np.array([0, 0, -1], np.int64))]))

    def _fused_layer(
        self, site: RNNSite, layer: int, x: str, lens: str, h0: str, c0: str
    ) -> tuple[str, str, str]:
        g, m = self.g, site.module
        d = site.directions
        key = (site.name, layer)
        if key not in self.weights:  # a layer called twice shares its initializers
            suffixes = (f"_l{layer}", f"_l{layer}_reverse")[:d]
            w, r, b = rnn_weights(_state(m), "", site.cell, suffixes)
            self.weights[key] = [
                g.const(f"W{layer}", w),
                g.const(f"R{layer}", r),
                g.const(f"B{layer}", b),
            ]
        ins = [x, *self.weights[key], lens]
        ins += [self._slice_states(h0, layer * d, d) if h0 else ""]
        if site.cell == "lstm":
            ins += [self._slice_states(c0, layer * d, d) if c0 else ""]
        while ins[-1] == "":
            ins.pop()
        attrs: dict[str, Any] = {
            "direction": "bidirectional" if d == 2 else "forward",
            "hidden_size": m.hidden_size,
            "layout": 0,
        }
        if site.cell == "gru":
            attrs["linear_before_reset"] = 1  # PyTorch resets after the recurrent matmul
            y, h = g.op("GRU", ins, 2, **attrs)
            return self._merge(y), str(h), ""
        y, h, c = g.op("LSTM", ins, 3, **attrs)
        return self._merge(y), str(h), str(c)

    def _projected_layer(
        self, site: RNNSite, layer: int, x: str, lens64: str, valid: str, h0: str, c0: str
    ) -> tuple[str, str, str]:
        from bilstm.export.projection import zero_state

        g, m = self.g, site.module
        d = site.directions
        ys, hs, cs = [], [], []
        for direction in range(d):
            index = layer * d + direction
            if h0:
                h_init = g.op(
                    "Squeeze",
                    [self._slice_states(h0, index, 1), g.const("axis", np.array([0], np.int64))],
                )
                c_init = g.op(
                    "Squeeze",
                    [self._slice_states(c0, index, 1), g.const("axis", np.array([0], np.int64))],
                )
            else:
                h_init = zero_state(g, lens64, site.output_size)
                c_init = zero_state(g, lens64, m.hidden_size)
            self.scans += 1
            y, h, c = projected_direction(
                g,
                _state(m),
                "",
                f"_l{layer}" + ("_reverse" if direction else ""),
                f"scan{self.scans}",
                x,
                lens64,
                valid,
                (str(h_init), str(c_init)),
                reverse=bool(direction),
            )
            ys.append(y)
            hs.append(g.unsqueeze(h, [0]))
            cs.append(g.unsqueeze(c, [0]))
        return self._concat(ys, -1), self._concat(hs, 0), self._concat(cs, 0)

    def _concat(self, values: list[str], axis: int) -> str:
        return values[0] if len(values) == 1 else str(self.g.op("Concat", values, axis=axis))

    def _valid(self, x: str, lens64: str) -> str:
        """Bool [time, batch, 1]: True at the real positions of time-major x."""
        g = self.g
        time = g.op("Gather", [g.op("Shape", [x]), g.const("zero", np.array(0, np.int64))], axis=0)
        steps = g.op(
            "Range",
            [g.const("zero", np.array(0, np.int64)), time, g.const("one", np.array(1, np.int64))],
        )
        mask = g.op("Less", [g.unsqueeze(steps, [1]), g.unsqueeze(lens64, [0])])
        return g.unsqueeze(mask, [2])

    def lower(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        """The nodes that replace one placeholder (they write its output names)."""
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        name = attrs["site"].decode() if isinstance(attrs["site"], bytes) else attrs["site"]
        site = self.sites[name]
        start = len(self.g.nodes)
        g, m = self.g, site.module
        inputs = list(node.input) + [""] * (4 - len(node.input))
        x, lens, h0, c0 = inputs[:4]
        y = x
        finals_h: list[str] = []
        finals_c: list[str] = []
        proj = int(getattr(m, "proj_size", 0))
        lens64 = valid = ""
        if proj:
            lens64 = str(g.op("Cast", [lens], to=TensorProto.INT64))
            valid = self._valid(x, lens64)
        for layer in range(m.num_layers):
            if proj:
                y, h, c = self._projected_layer(site, layer, y, lens64, valid, h0, c0)
            else:
                y, h, c = self._fused_layer(site, layer, y, lens, h0, c0)
            finals_h.append(h)
            finals_c.append(c)
        outs = list(node.output)
        results = [
            y,
            self._concat(finals_h, 0),
            self._concat(finals_c, 0) if site.cell == "lstm" else "",
        ]
        for out, value in zip(outs, results, strict=False):
            if out:
                g.op("Identity", [value], [out])
        return g.nodes[start:]


def lower_placeholders(
    model: onnx.ModelProto, sites: Mapping[str, RNNSite], opset: int
) -> onnx.ModelProto:
    """Replace every placeholder by its ONNX nodes, in place of the node (order kept)."""
    lowering = _Lowering(sites, opset)
    nodes: list[onnx.NodeProto] = []
    found = 0
    for node in model.graph.node:
        if node.domain == PLACEHOLDER_DOMAIN and node.op_type == PLACEHOLDER_OP:
            nodes.extend(lowering.lower(node))
            found += 1
        elif node.domain == PLACEHOLDER_DOMAIN:
            raise ExportError(f"unexpected node {node.op_type} in domain {PLACEHOLDER_DOMAIN}")
        else:
            nodes.append(node)
    expected = sum(site.calls for site in sites.values())
    if found != expected:
        raise ExportError(
            f"the traced graph has {found} recurrent layer call(s), the module made {expected}: "
            "the exporter dropped or duplicated one"
        )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(lowering.g.initializers)
    kept = [o for o in model.opset_import if o.domain != PLACEHOLDER_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model
