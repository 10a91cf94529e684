"""Export hooks of `classify`: a pooled sequence -> one label per text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from bilstm.export.builder import GraphBuilder
from bilstm.export.layers import BATCH, dense, pool
from bilstm.export.standalone.names import CLASSES, LABEL, NUM_TOKENS, PAD
from bilstm.export.standalone.nodes import strings, tensor_info
from bilstm.export.standalone.post import CORE_PROBABILITIES, Post
from bilstm.export.task_base import State, TextTask
from bilstm.models.checkpoint import Checkpoint
from bilstm.models.config import ModelConfig
from bilstm.runtime import metadata as md


class ClassifyExport(TextTask):
    """Pooling (last, mean, max or attention) and a dense layer; a label per text."""

    name = "classify"
    # The classifier keeps its embedding outside an `embedder` (it has no character CNN).
    embedding_prefix = "embedding"

    def head(
        self, g: GraphBuilder, cfg: ModelConfig, state: State, y: str, final: str
    ) -> tuple[list[str | int], list[onnx.ValueInfoProto]]:
        pooled = pool(g, cfg, state, y, final, md.INPUT_IDS, md.LENGTHS)
        dense(g, state, pooled, md.LOGITS)
        return [BATCH, cfg.num_labels], []

    def postprocess(self, post: Post, top_k: int) -> int:
        b = post.b
        valid = b.op("Greater", [NUM_TOKENS, b.i64("zero", 0)])
        post.zero_rows(b.op("Unsqueeze", [valid, b.i64("axes", [1])]))
        best = b.op("ArgMax", [CORE_PROBABILITIES], axis=1, keepdims=0)
        label = b.lookup(best, list(range(post.classes)), list(post.ckpt.labels), PAD)
        b.op("Where", [valid, label, b.const("empty", strings([PAD]))], LABEL)
        post.label_names()
        return 0

    def standalone_outputs(self, n: int, k: int) -> list[onnx.ValueInfoProto]:
        f32, i64, s = TensorProto.FLOAT, TensorProto.INT64, TensorProto.STRING
        return [
            tensor_info(LABEL, s, ["batch"]),
            tensor_info(md.PROBABILITIES, f32, ["batch", n]),
            tensor_info(md.LOGITS, f32, ["batch", n]),
            tensor_info(CLASSES, s, [n]),
            tensor_info(NUM_TOKENS, i64, ["batch"]),
        ]

    def output_problems(
        self,
        ckpt: Checkpoint,
        got: dict[str, np.ndarray],
        rows: Sequence[int],
        references: dict[str, Any],
    ) -> list[str]:
        best = references["id_graph"][md.PROBABILITIES].argmax(-1)
        if [str(x) for x in got[LABEL][rows]] != [ckpt.labels[i] for i in best]:
            return ["label differs from the id graph's argmax"]
        return []
