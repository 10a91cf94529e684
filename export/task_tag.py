"""Export hooks of `tag`: one label per token."""

from __future__ import annotations

import onnx
from onnx import TensorProto

from bilstm.export.builder import GraphBuilder
from bilstm.export.layers import BATCH, TIME, dense
from bilstm.export.standalone.names import CLASSES, CONFIDENCES, NUM_TOKENS, PAD, TAGS, TOKENS
from bilstm.export.standalone.nodes import strings, tensor_info
from bilstm.export.standalone.post import CORE_PROBABILITIES, Post
from bilstm.export.task_base import State, TextTask
from bilstm.models.config import ModelConfig
from bilstm.runtime import metadata as md


class TagExport(TextTask):
    """A dense layer on every position; padded positions get "" and zeros standalone."""

    name = "tag"

    def head(
        self, g: GraphBuilder, cfg: ModelConfig, state: State, y: str, final: str
    ) -> tuple[list[str | int], list[onnx.ValueInfoProto]]:
        dense(g, state, g.op("Transpose", [y], perm=[1, 0, 2]), md.LOGITS)
        return [BATCH, TIME, cfg.num_labels], []

    def postprocess(self, post: Post, top_k: int) -> int:
        b = post.b
        keep = b.op("Unsqueeze", [post.present, b.i64("axes", [2])])
        self._tags(post)
        post.zero_rows(keep)
        post.label_names()
        return 0

    def _tags(self, post: Post) -> None:
        """The best tag and its probability per real token, "" and 0 on padding."""
        b = post.b
        best = b.op("ArgMax", [CORE_PROBABILITIES], axis=2, keepdims=0)
        tags = b.lookup(best, list(range(post.classes)), list(post.ckpt.labels), PAD)
        b.op("Where", [post.present, tags, b.const("empty", strings([PAD]))], TAGS)
        b.op(
            "Where",
            [
                post.present,
                b.op("ReduceMax", [CORE_PROBABILITIES, b.i64("axes", [2])], keepdims=0),
                post.zero,
            ],
            CONFIDENCES,
        )

    def standalone_outputs(self, n: int, k: int) -> list[onnx.ValueInfoProto]:
        f32, i64, s = TensorProto.FLOAT, TensorProto.INT64, TensorProto.STRING
        batch, time = "batch", "time"
        return [
            tensor_info(TOKENS, s, [batch, time]),
            tensor_info(TAGS, s, [batch, time]),
            tensor_info(CONFIDENCES, f32, [batch, time]),
            tensor_info(md.PROBABILITIES, f32, [batch, time, n]),
            tensor_info(md.LOGITS, f32, [batch, time, n]),
            tensor_info(CLASSES, s, [n]),
            tensor_info(NUM_TOKENS, i64, [batch]),
        ]
