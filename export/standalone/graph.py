"""The standalone graph: preprocessing nodes, the id graph unchanged, postprocessing nodes."""

from __future__ import annotations

import copy
import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from bilstm.export.standalone.casing import needs_final_sigma
from bilstm.export.standalone.names import (
    CLASSES,
    CONFIDENCES,
    DEFAULT_TOP_K,
    LABEL,
    ML,
    MS,
    NUM_BLANKS,
    NUM_TOKENS,
    PAD,
    STANDALONE_OPSET,
    TAGS,
    TEXT,
    TOKENS,
    WORD_PROBABILITIES,
    WORDS,
)
from bilstm.export.standalone.nodes import NodeBuilder, strings, tensor_info
from bilstm.export.standalone.regex import re2_pattern
from bilstm.models.checkpoint import Checkpoint
from bilstm.runtime import metadata as md
from bilstm.runtime.errors import ExportError
from bilstm.runtime.preprocess import BLANK, MASK
from bilstm.runtime.tasks import MODEL_CLASSES
from bilstm.runtime.tasks import spec as task_spec
from bilstm.runtime.tokenizer import Tokenizer
from bilstm.runtime.vocab import PAD_ID, UNK_ID

CORE_LOGITS, CORE_PROBABILITIES = "core_logits", "core_probabilities"
"""The id graph's outputs, renamed inside: the standalone graph's own `logits` and
`probabilities` are those zeroed for texts without tokens (or without exactly one blank)."""


def check_supported(ckpt: Checkpoint) -> None:
    """Refuse, before any work, a checkpoint whose preprocessing has no exact ONNX form."""
    if not task_spec(ckpt.task).text_input:
        text_tasks = [c.SPEC.name for c in MODEL_CLASSES.values() if c.SPEC.text_input]
        raise ExportError(
            f"--with-tokenizer applies to text models ({', '.join(text_tasks)}); "
            f"a {ckpt.task} model takes numbers"
        )
    assert ckpt.tokenizer is not None
    re2_pattern(ckpt.tokenizer.pattern)


def _rename(nodes: Sequence[onnx.NodeProto], names: dict[str, str]) -> list[onnx.NodeProto]:
    out = []
    for node in nodes:
        node = copy.deepcopy(node)
        for seq in (node.input, node.output):
            for i, name in enumerate(seq):
                seq[i] = names.get(name, name)
        out.append(node)
    return out


def _opset_of(core: onnx.ModelProto) -> int:
    """The id graph's default-domain opset; `StringConcat` needs `STANDALONE_OPSET`."""
    opset = int(next(o.version for o in core.opset_import if o.domain in ("", "ai.onnx")))
    if opset < STANDALONE_OPSET:
        raise ExportError(
            f"--with-tokenizer needs --opset {STANDALONE_OPSET} or later (StringConcat), "
            f"got {opset}"
        )
    return opset


def _preprocess(b: NodeBuilder, ckpt: Checkpoint) -> str:
    """Text -> the id graph's inputs, as the Python runtime computes them.

    Returns `present` (int64 [batch, time]: 1 where a real token is, 0 on padding).
    """
    assert ckpt.tokenizer is not None and ckpt.vocabulary is not None
    tok, vocab = ckpt.tokenizer, ckpt.vocabulary.tokens
    tokens = b.split(TEXT, re2_pattern(tok.pattern), tok.max_length)
    present = b.lookup(tokens, [PAD], [0], 1)
    b.op("ReduceSum", [present, b.i64("axes", [1])], NUM_TOKENS, keepdims=0)
    # The id graph needs lengths >= 1; texts without tokens get 1 and zeroed outputs.
    b.op("Max", [NUM_TOKENS, b.i64("one", 1)], md.LENGTHS)
    alphabet = ckpt.task_config.get("char_vocabulary") or []
    chars = b.characters(tokens) if tok.lowercase or alphabet else ""
    keys = b.lower(tokens, chars, needs_final_sigma(vocab)) if tok.lowercase else tokens
    ids = b.lookup(keys, vocab, list(range(len(vocab))), UNK_ID)
    if ckpt.task == "cloze":
        blank = b.lookup(tokens, [BLANK], [1], 0)
        b.op("ReduceSum", [blank, b.i64("axes", [1])], NUM_BLANKS, keepdims=0)
        b.op(
            "ArgMax",
            [b.op("Cast", [blank], to=TensorProto.FLOAT)],
            md.MASK_POSITIONS,
            axis=1,
            keepdims=0,
        )
        mask_id = ckpt.vocabulary.id_of(Tokenizer(tok).normalize(MASK))
        ids = b.op(
            "Where",
            [b.op("Cast", [blank], to=TensorProto.BOOL), b.i64("mask_id", mask_id), ids],
        )
    b.op("Mul", [ids, present], md.INPUT_IDS)
    if alphabet:
        b.char_ids(tokens, chars, alphabet, int(ckpt.task_config.get("max_word_length", 20)))
    return str(present)


def _core_nodes(core: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The id graph's nodes, outputs renamed to `CORE_LOGITS`/`CORE_PROBABILITIES`."""
    produced = {md.INPUT_IDS, md.LENGTHS, md.CHAR_IDS, md.MASK_POSITIONS}
    needed = {i.name for i in core.graph.input}
    if not needed <= produced:
        raise ExportError(
            f"the id graph takes inputs {sorted(needed - produced)} this wrapper lacks"
        )
    return _rename(core.graph.node, {md.LOGITS: CORE_LOGITS, md.PROBABILITIES: CORE_PROBABILITIES})


@dataclass
class _Post:
    """What the postprocessing steps share."""

    b: NodeBuilder
    ckpt: Checkpoint
    present: str
    zero: str
    classes: int
    """Size of the last axis of probabilities: labels, or the vocabulary for cloze."""


def _postprocess(post: _Post, top_k: int) -> int:
    """The id graph's outputs -> labels, tags or words; zeros for rows that have none.

    Returns k, the words per blank of a cloze model (0 for the other tasks).
    """
    b, task, labels = post.b, post.ckpt.task, list(post.ckpt.labels)
    present_b = b.op("Cast", [post.present], to=TensorProto.BOOL)
    valid = ""
    if task == "tag":
        keep = b.op("Unsqueeze", [present_b, b.i64("axes", [2])])
        _tags(post, present_b)
    else:
        valid = (
            b.op("Equal", [NUM_BLANKS, b.i64("one", 1)])
            if task == "cloze"
            else b.op("Greater", [NUM_TOKENS, b.i64("zero", 0)])
        )
        keep = b.op("Unsqueeze", [valid, b.i64("axes", [1])])
    b.op("Where", [keep, CORE_LOGITS, post.zero], md.LOGITS)
    b.op("Where", [keep, CORE_PROBABILITIES, post.zero], md.PROBABILITIES)
    if task == "classify":
        best = b.op("ArgMax", [CORE_PROBABILITIES], axis=1, keepdims=0)
        label = b.lookup(best, list(range(post.classes)), labels, PAD)
        b.op("Where", [valid, label, b.const("empty", strings([PAD]))], LABEL)
    if task in ("classify", "tag"):
        b.op("Identity", [b.const("classes", strings(labels))], CLASSES)
    return _top_words(post, keep, top_k) if task == "cloze" else 0


def _tags(post: _Post, present_b: str) -> None:
    """Tagging: the best tag and its probability per real token, "" and 0 on padding."""
    b = post.b
    best = b.op("ArgMax", [CORE_PROBABILITIES], axis=2, keepdims=0)
    tags = b.lookup(best, list(range(post.classes)), list(post.ckpt.labels), PAD)
    b.op("Where", [present_b, tags, b.const("empty", strings([PAD]))], TAGS)
    b.op(
        "Where",
        [
            present_b,
            b.op("ReduceMax", [CORE_PROBABILITIES, b.i64("axes", [2])], keepdims=0),
            post.zero,
        ],
        CONFIDENCES,
    )


def _top_words(post: _Post, keep: str, top_k: int) -> int:
    """Cloze: the `top_k` likeliest real words per blank (never pad, unk or the mask)."""
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


def _outputs(task: str, n: int, k: int) -> list[onnx.ValueInfoProto]:
    """The graph outputs per task (docs/model-file.md, "Standalone models")."""
    f32, i64, s = TensorProto.FLOAT, TensorProto.INT64, TensorProto.STRING
    batch, time = "batch", "time"
    if task == "classify":
        return [
            tensor_info(LABEL, s, [batch]),
            tensor_info(md.PROBABILITIES, f32, [batch, n]),
            tensor_info(md.LOGITS, f32, [batch, n]),
            tensor_info(CLASSES, s, [n]),
            tensor_info(NUM_TOKENS, i64, [batch]),
        ]
    if task == "tag":
        return [
            tensor_info(TOKENS, s, [batch, time]),
            tensor_info(TAGS, s, [batch, time]),
            tensor_info(CONFIDENCES, f32, [batch, time]),
            tensor_info(md.PROBABILITIES, f32, [batch, time, n]),
            tensor_info(md.LOGITS, f32, [batch, time, n]),
            tensor_info(CLASSES, s, [n]),
            tensor_info(NUM_TOKENS, i64, [batch]),
        ]
    return [
        tensor_info(WORDS, s, [batch, k]),
        tensor_info(WORD_PROBABILITIES, f32, [batch, k]),
        tensor_info(md.PROBABILITIES, f32, [batch, n]),
        tensor_info(md.LOGITS, f32, [batch, n]),
        tensor_info(NUM_TOKENS, i64, [batch]),
        tensor_info(NUM_BLANKS, i64, [batch]),
    ]


def _assemble(
    b: NodeBuilder,
    core: onnx.ModelProto,
    core_nodes: list[onnx.NodeProto],
    post_start: int,
    outputs: list[onnx.ValueInfoProto],
    task: str,
    opset: int,
) -> onnx.ModelProto:
    """Pre nodes, id graph, post nodes in one model; checked by `onnx.checker`."""
    pre_post = b.g.nodes
    names = {init.name for init in core.graph.initializer} | {
        o for node in core_nodes for o in node.output
    }
    clash = names & (
        {init.name for init in b.g.initializers} | {o for nd in pre_post for o in nd.output}
    )
    if clash:
        raise ExportError(
            f"internal: standalone names clash with the id graph: {sorted(clash)[:5]}"
        )
    graph = helper.make_graph(
        [*pre_post[:post_start], *core_nodes, *pre_post[post_start:]],
        f"bilstm_{task}_standalone",
        inputs=[tensor_info(TEXT, TensorProto.STRING, ["batch"])],
        outputs=outputs,
        initializer=[*core.graph.initializer, *b.g.initializers],
        value_info=b.value_info,
    )
    imports = {o.domain: o.version for o in core.opset_import}
    imports |= {"": opset, ML: max(imports.get(ML, 0), 2), MS: max(imports.get(MS, 0), 1)}
    imports.pop("ai.onnx", None)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(imports.items())],
        producer_name="bilstm",
    )
    model.ir_version = core.ir_version
    onnx.checker.check_model(model, full_check=True)
    return model


def build_standalone(
    ckpt: Checkpoint, core: onnx.ModelProto, top_k: int = DEFAULT_TOP_K
) -> onnx.ModelProto:
    """The standalone model: `text[batch]` string in, the id graph `core` inside.

    `core` is the verified id graph (fp32 or a variant) of `ckpt`, built at opset >= 20.
    """
    check_supported(ckpt)
    assert ckpt.vocabulary is not None
    opset = _opset_of(core)
    b = NodeBuilder(opset)
    present = _preprocess(b, ckpt)
    core_nodes = _core_nodes(core)
    post_start = len(b.g.nodes)  # everything after this reads the id graph's outputs
    n = len(ckpt.labels) if ckpt.task != "cloze" else len(ckpt.vocabulary.tokens)
    zero = b.const("zero", np.array(0.0, np.float32))
    k = _postprocess(_Post(b, ckpt, present, zero, n), top_k)
    return _assemble(b, core, core_nodes, post_start, _outputs(ckpt.task, n, k), ckpt.task, opset)


def describe(ckpt: Checkpoint, model: onnx.ModelProto) -> dict[str, Any]:
    """What the metadata records about the in-graph preprocessing."""
    assert ckpt.tokenizer is not None and ckpt.vocabulary is not None
    tokenexp = re2_pattern(ckpt.tokenizer.pattern)
    return {
        "input": TEXT,
        "outputs": [o.name for o in model.graph.output],
        "tokenexp_sha256": hashlib.sha256(tokenexp.encode()).hexdigest(),
        "lowercase": "python str.lower table" if ckpt.tokenizer.lowercase else None,
        "final_sigma": bool(ckpt.tokenizer.lowercase and needs_final_sigma(ckpt.vocabulary.tokens)),
        "top_k": next(
            (
                o.type.tensor_type.shape.dim[1].dim_value
                for o in model.graph.output
                if o.name == WORDS
            ),
            None,
        ),
        "python": sys.version.split()[0],
    }
