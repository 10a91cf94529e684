"""The export hooks a task owns, and the defaults every text task shares.

One `ExportTask` per task (export/task_<name>.py), found through `EXPORT_TASKS` in
export/tasks.py by the metadata's task name: the id graph's inputs and output head, the inputs
and PyTorch outputs of the parity check, and, for text tasks (`TextTask`), the standalone
graph's task-specific nodes, outputs and checks. Static facts (per-token outputs, variants,
text input) are read from the runtime's `TaskSpec` (`spec`), not repeated here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch
from onnx import TensorProto

from bilstm.core.preprocess import TextEncoder
from bilstm.export.builder import GraphBuilder
from bilstm.export.feeds import Feeds, ragged_batch, text_encoder
from bilstm.export.layers import BATCH, TIME, encoder, io, token_features
from bilstm.models.checkpoint import Checkpoint, predict_logits
from bilstm.models.config import ModelConfig
from bilstm.runtime import metadata as md
from bilstm.runtime.tasks import spec as task_spec
from bilstm.runtime.taskspec import TaskSpec

if TYPE_CHECKING:
    from bilstm.export.standalone.nodes import NodeBuilder
    from bilstm.export.standalone.post import Post

State = dict[str, torch.Tensor]
Graph = tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]
"""Graph inputs and outputs, in the order the file declares them."""


class ExportTask:
    """The export hooks of one task (`name` is its metadata name)."""

    name = ""

    @property
    def spec(self) -> TaskSpec:
        """The runtime's static facts of the task."""
        return task_spec(self.name)

    def graph(self, g: GraphBuilder, cfg: ModelConfig, state: State, seq_lens: str) -> Graph:
        """Emit the id graph's nodes after the `seq_lens` cast; return its inputs, outputs."""
        raise NotImplementedError

    def random_feeds(self, ckpt: Checkpoint, batch: int, time: int, seed: int) -> Feeds:
        """Random graph inputs at one (batch, time), ragged lengths."""
        raise NotImplementedError

    def example_feeds(self, ckpt: Checkpoint) -> Feeds | None:
        """Graph inputs from the checkpoint's stored dev examples (None: none usable)."""
        raise NotImplementedError

    def reference_outputs(self, ckpt: Checkpoint, feeds: Feeds) -> Feeds:
        """What the PyTorch model computes for `feeds`, by graph output name."""
        raise NotImplementedError


class TextTask(ExportTask):
    """A task reading token ids: softmax outputs, and a standalone (text-in) form."""

    embedding_prefix = "embedder.embedding"
    """Where the word embedding sits in the PyTorch state dict."""
    extra_probe_texts: tuple[str, ...] = ()
    """Texts the standalone check adds to `PROBE_TEXTS` for this task."""

    # -- the id graph ---------------------------------------------------------------------
    def graph(self, g: GraphBuilder, cfg: ModelConfig, state: State, seq_lens: str) -> Graph:
        i64, f32 = TensorProto.INT64, TensorProto.FLOAT
        inputs = [io(md.INPUT_IDS, i64, [BATCH, TIME]), io(md.LENGTHS, i64, [BATCH])]
        if cfg.char_vocab_size:
            inputs.append(io(md.CHAR_IDS, i64, [BATCH, TIME, cfg.max_word_length]))
        features = token_features(g, cfg, state, self.embedding_prefix)
        y, final = encoder(g, cfg, state, features, seq_lens)
        out_dims, extra = self.head(g, cfg, state, y, final)
        g.op("Softmax", [md.LOGITS], [md.PROBABILITIES], axis=len(out_dims) - 1)
        outputs = [io(md.LOGITS, f32, out_dims), io(md.PROBABILITIES, f32, out_dims)]
        return [*inputs, *extra], outputs

    def head(
        self, g: GraphBuilder, cfg: ModelConfig, state: State, y: str, final: str
    ) -> tuple[list[str | int], list[onnx.ValueInfoProto]]:
        """Emit `logits` from the encoder's y [time, batch, D] and final [batch, D].

        Returns the output's dims and any inputs the head adds after the token inputs.
        """
        raise NotImplementedError

    # -- parity -----------------------------------------------------------------------------
    def random_feeds(self, ckpt: Checkpoint, batch: int, time: int, seed: int) -> Feeds:
        cfg = ckpt.model_config
        rng = np.random.default_rng(seed + 1000)
        ids, lens = ragged_batch(cfg.vocab_size, batch, time, seed)
        feeds = {md.INPUT_IDS: ids, md.LENGTHS: lens}
        if cfg.char_vocab_size:
            chars = rng.integers(1, cfg.char_vocab_size, size=(batch, time, cfg.max_word_length))
            word_len = rng.integers(1, cfg.max_word_length + 1, size=(batch, time, 1))
            chars[np.arange(cfg.max_word_length)[None, None, :] >= word_len] = 0
            chars[ids == 0] = 0
            feeds[md.CHAR_IDS] = chars.astype(np.int64)
        return feeds | self.random_extras(lens, rng)

    def random_extras(self, lengths: np.ndarray, rng: np.random.Generator) -> Feeds:
        """Inputs beyond ids, lengths and char ids (drawn after them from `rng`)."""
        return {}

    def example_feeds(self, ckpt: Checkpoint) -> Feeds | None:
        if not ckpt.examples:
            return None
        enc = text_encoder(ckpt)
        token_lists, extra = self.example_tokens([enc.split(str(t)) for t in ckpt.examples])
        token_lists = [t for t in token_lists if t]
        if not token_lists:
            return None
        return enc.batch(token_lists) | extra

    def example_tokens(self, token_lists: list[list[str]]) -> tuple[list[list[str]], Feeds]:
        """The examples' tokens as the graph reads them, and inputs beyond ids and lengths."""
        return token_lists, {}

    def reference_outputs(self, ckpt: Checkpoint, feeds: Feeds) -> Feeds:
        extra = [feeds[k] for k in (md.CHAR_IDS, md.MASK_POSITIONS) if k in feeds]
        logits = predict_logits(ckpt.model, feeds[md.INPUT_IDS], feeds[md.LENGTHS], *extra)
        return {md.LOGITS: logits.numpy(), md.PROBABILITIES: torch.softmax(logits, -1).numpy()}

    # -- the standalone graph (export/standalone/graph.py) --------------------------------
    def standalone_ids(self, b: NodeBuilder, ckpt: Checkpoint, tokens: str, ids: str) -> str:
        """Nodes between the vocabulary lookup `ids` and the id graph's `input_ids`."""
        return ids

    def width(self, ckpt: Checkpoint) -> int:
        """Size of the probabilities' last axis."""
        return len(ckpt.labels)

    def postprocess(self, post: Post, top_k: int) -> int:
        """The id graph's outputs -> this task's outputs, zeros for rows without a result.

        Returns k, the words per blank (0 where the task proposes none).
        """
        raise NotImplementedError

    def standalone_outputs(self, n: int, k: int) -> list[onnx.ValueInfoProto]:
        """The standalone graph's outputs (docs/model-file.md, "Standalone models")."""
        raise NotImplementedError

    # -- its verification (export/standalone/verify.py) ------------------------------------
    def python_tokens(self, tokens: list[str]) -> list[str]:
        """The tokens the Python runtime encodes for a text split into `tokens`."""
        return tokens

    def preprocessing_problems(
        self, got: dict[str, np.ndarray], r: int, tokens: list[str]
    ) -> list[str]:
        """Task-specific preprocessing differences of row r from the Python runtime."""
        return []

    def scored(self, tokens: list[str]) -> bool:
        """Whether the graph scores a text (others get zeros)."""
        return bool(tokens)

    def python_feeds(
        self, enc: TextEncoder, token_lists: Sequence[list[str]], rows: Sequence[int]
    ) -> Feeds:
        """The id graph's inputs for `rows`, as the Python runtime builds them."""
        return enc.batch([token_lists[i] for i in rows])

    def output_problems(
        self,
        ckpt: Checkpoint,
        got: dict[str, np.ndarray],
        rows: Sequence[int],
        references: dict[str, Any],
    ) -> list[str]:
        """Differences of the task's own outputs (labels, ...) from the references."""
        return []
