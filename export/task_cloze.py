"""Export hooks of `cloze`: the likeliest words for the one blank (`___`) of a text."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto

from bilstm.core.errors import ExportError
from bilstm.core.preprocess import BLANK, MASK, TextEncoder, blank_position
from bilstm.core.tokenizer import Tokenizer
from bilstm.core.vocab import PAD_ID, UNK_ID
from bilstm.export.builder import GraphBuilder
from bilstm.export.feeds import Feeds
from bilstm.export.layers import BATCH, dense, io
from bilstm.export.standalone.names import (
    NUM_BLANKS,
    NUM_TOKENS,
    PAD,
    WORD_PROBABILITIES,
    WORDS,
)
from bilstm.export.standalone.nodes import NodeBuilder, strings, tensor_info
from bilstm.export.standalone.post import CORE_PROBABILITIES, Post
from bilstm.export.task_base import State, TextTask
from bilstm.models.checkpoint import Checkpoint
from bilstm.models.config import ModelConfig
from bilstm.runtime import metadata as md


class ClozeExport(TextTask):
    """The features at each row's mask position -> scores over the vocabulary."""

    name = "cloze"
    extra_probe_texts = (
        "the ___ was great",
        "___",
        "A ___, really!",
        "two ___ ___ blanks",
        "a___b ____",
    )

    # -- the id graph and its parity --------------------------------------------------------
    def head(
        self, g: GraphBuilder, cfg: ModelConfig, state: State, y: str, final: str
    ) -> tuple[list[str | int], list[onnx.ValueInfoProto]]:
        picked = g.op(
            "GatherND",
            [g.op("Transpose", [y], perm=[1, 0, 2]), g.unsqueeze(md.MASK_POSITIONS, [1])],
            batch_dims=1,
        )
        dense(g, state, picked, md.LOGITS)
        return [BATCH, cfg.num_labels], [io(md.MASK_POSITIONS, TensorProto.INT64, [BATCH])]

    def random_extras(self, lengths: np.ndarray, rng: np.random.Generator) -> Feeds:
        return {md.MASK_POSITIONS: (rng.random(len(lengths)) * lengths).astype(np.int64)}

    def example_tokens(self, token_lists: list[list[str]]) -> tuple[list[list[str]], Feeds]:
        """Examples with a blank, the blank replaced by the mask token, and its position."""
        kept, positions = [], []
        for toks in token_lists:
            pos = blank_position(toks) if toks else None
            if pos is not None:
                toks[pos] = MASK
                kept.append(toks)
                positions.append(pos)
        return kept, {md.MASK_POSITIONS: np.asarray(positions, np.int64)}

    # -- the standalone graph -----------------------------------------------------------------
    def standalone_ids(self, b: NodeBuilder, ckpt: Checkpoint, tokens: str, ids: str) -> str:
        """Blanks: their count, the first one's position, and the mask token's id there."""
        assert ckpt.tokenizer is not None and ckpt.vocabulary is not None
        blank = b.lookup(tokens, [BLANK], [1], 0)
        b.op("ReduceSum", [blank, b.i64("axes", [1])], NUM_BLANKS, keepdims=0)
        b.op(
            "ArgMax",
            [b.op("Cast", [blank], to=TensorProto.FLOAT)],
            md.MASK_POSITIONS,
            axis=1,
            keepdims=0,
        )
        mask_id = ckpt.vocabulary.id_of(Tokenizer(ckpt.tokenizer).normalize(MASK))
        return b.op(
            "Where",
            [b.op("Cast", [blank], to=TensorProto.BOOL), b.i64("mask_id", mask_id), ids],
        )

    def width(self, ckpt: Checkpoint) -> int:
        assert ckpt.vocabulary is not None
        return len(ckpt.vocabulary.tokens)

    def postprocess(self, post: Post, top_k: int) -> int:
        b = post.b
        valid = b.op("Equal", [NUM_BLANKS, b.i64("one", 1)])
        keep = b.op("Unsqueeze", [valid, b.i64("axes", [1])])
        post.zero_rows(keep)
        return self._top_words(post, keep, top_k)

    def _top_words(self, post: Post, keep: str, top_k: int) -> int:
        """The `top_k` likeliest real words per blank (never pad, unk or the mask)."""
        b, vocabulary = post.b, post.ckpt.vocabulary
        assert vocabulary is not None
        vocab = vocabulary.tokens
        excluded = np.zeros(len(vocab), dtype=bool)
        excluded[[PAD_ID, UNK_ID]] = True
        if MASK in vocabulary:
            excluded[vocabulary.id_of(MASK)] = True
        k = min(top_k, int((~excluded).sum()))
        if k < 1:
            raise ExportError("the cloze vocabulary has no word to propose")
        scores = b.op(
            "Where",
            [
                b.const("excluded", excluded),
                b.const("minus", np.array(-1.0, np.float32)),
                CORE_PROBABILITIES,
            ],
        )
        top, index = b.g.op("TopK", [scores, b.i64("k", [k])], 2, axis=1, largest=1, sorted=1)
        words = b.lookup(str(index), list(range(len(vocab))), vocab, PAD)
        b.op("Where", [keep, words, b.const("empty", strings([PAD]))], WORDS)
        b.op("Where", [keep, str(top), post.zero], WORD_PROBABILITIES)
        return k

    def standalone_outputs(self, n: int, k: int) -> list[onnx.ValueInfoProto]:
        f32, i64, s = TensorProto.FLOAT, TensorProto.INT64, TensorProto.STRING
        return [
            tensor_info(WORDS, s, ["batch", k]),
            tensor_info(WORD_PROBABILITIES, f32, ["batch", k]),
            tensor_info(md.PROBABILITIES, f32, ["batch", n]),
            tensor_info(md.LOGITS, f32, ["batch", n]),
            tensor_info(NUM_TOKENS, i64, ["batch"]),
            tensor_info(NUM_BLANKS, i64, ["batch"]),
        ]

    # -- its verification -----------------------------------------------------------------------
    def python_tokens(self, tokens: list[str]) -> list[str]:
        return [MASK if t == BLANK else t for t in tokens]

    def preprocessing_problems(
        self, got: dict[str, np.ndarray], r: int, tokens: list[str]
    ) -> list[str]:
        blanks = [j for j, t in enumerate(tokens) if t == BLANK]
        if int(got[NUM_BLANKS][r]) != len(blanks):
            return [f"num_blanks {int(got[NUM_BLANKS][r])} != {len(blanks)}"]
        if len(blanks) == 1 and int(got[md.MASK_POSITIONS][r]) != blanks[0]:
            return [f"mask position {int(got[md.MASK_POSITIONS][r])} != {blanks[0]}"]
        return []

    def scored(self, tokens: list[str]) -> bool:
        """Only texts with exactly one blank get words."""
        return tokens.count(BLANK) == 1

    def python_feeds(
        self, enc: TextEncoder, token_lists: Sequence[list[str]], rows: Sequence[int]
    ) -> Feeds:
        feeds = enc.batch([self.python_tokens(token_lists[i]) for i in rows])
        feeds[md.MASK_POSITIONS] = np.array([token_lists[i].index(BLANK) for i in rows], np.int64)
        return feeds
