"""Writes the ONNX graph of a bilstm model directly from its weights.

Why not `torch.onnx.export`: the TorchScript exporter is deprecated, and the dynamo exporter
cannot trace packed sequences and emits no `sequence_lens` (docs/export-notes.md 1-2). The
architectures here are few and fixed, so the graph is written node by node: one fused
bidirectional `LSTM`/`GRU` node per layer fed `sequence_lens` from the `lengths` input, dynamic
`batch` and `time` axes everywhere, weights already in ONNX gate order (no run-time reordering,
so quantisation sees plain initializers). Parity against PyTorch is checked after every export.

The layers are in export/layers.py; each task's inputs and output head in its export hooks
(export/tasks.py, `ExportTask.graph`).
"""

from __future__ import annotations

import onnx
import torch
from onnx import TensorProto, helper

from bilstm.export.builder import GraphBuilder
from bilstm.export.layers import BATCH, TIME
from bilstm.export.tasks import export_task
from bilstm.models.config import ModelConfig
from bilstm.runtime import metadata as md

DEFAULT_OPSET = 17
MIN_OPSET = 14
MAX_OPSET = 21


def build_graph(
    cfg: ModelConfig, state: dict[str, torch.Tensor], opset: int = DEFAULT_OPSET
) -> onnx.ModelProto:
    """The ONNX model of any bilstm task, inputs/outputs as in docs/model-file.md."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be within {MIN_OPSET}..{MAX_OPSET}, got {opset}")
    g = GraphBuilder(opset)
    seq_lens = g.op("Cast", [md.LENGTHS], to=TensorProto.INT32)
    inputs, outputs = export_task(cfg.task).graph(g, cfg, state, seq_lens)
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
    from bilstm.core.errors import ExportError

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
