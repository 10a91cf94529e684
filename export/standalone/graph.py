"""The standalone graph: preprocessing nodes, the id graph unchanged, postprocessing nodes."""

from __future__ import annotations

import copy
import hashlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from bilstm.core.errors import ExportError
from bilstm.core.vocab import UNK_ID
from bilstm.export.standalone.casing import needs_final_sigma
from bilstm.export.standalone.names import (
    DEFAULT_TOP_K,
    ML,
    MS,
    NUM_TOKENS,
    PAD,
    STANDALONE_OPSET,
    TEXT,
    WORDS,
)
from bilstm.export.standalone.nodes import NodeBuilder, tensor_info
from bilstm.export.standalone.post import CORE_LOGITS, CORE_PROBABILITIES, Post
from bilstm.export.standalone.regex import re2_pattern
from bilstm.models.checkpoint import Checkpoint
from bilstm.runtime import metadata as md
from bilstm.runtime.tasks import MODEL_CLASSES
from bilstm.runtime.tasks import spec as task_spec

if TYPE_CHECKING:
    from bilstm.export.task_base import TextTask


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


def _hooks(ckpt: Checkpoint) -> TextTask:
    """The task's standalone nodes and outputs (export/task_*.py)."""
    # Imported here: the task modules build on this package's nodes and names.
    from bilstm.export.tasks import text_task

    return text_task(ckpt.task)


def _preprocess(b: NodeBuilder, ckpt: Checkpoint, hooks: TextTask) -> str:
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
    ids = hooks.standalone_ids(b, ckpt, tokens, ids)
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
    hooks = _hooks(ckpt)
    opset = _opset_of(core)
    b = NodeBuilder(opset)
    present = _preprocess(b, ckpt, hooks)
    core_nodes = _core_nodes(core)
    post_start = len(b.g.nodes)  # everything after this reads the id graph's outputs
    n = hooks.width(ckpt)
    zero = b.const("zero", np.array(0.0, np.float32))
    # Only tag reads the mask; it is emitted for every task so that files stay as they were.
    present_b = b.op("Cast", [present], to=TensorProto.BOOL)
    k = hooks.postprocess(Post(b, ckpt, present_b, zero, n), top_k)
    outputs = hooks.standalone_outputs(n, k)
    return _assemble(b, core, core_nodes, post_start, outputs, ckpt.task, opset)


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
