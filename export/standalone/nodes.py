"""The nodes a standalone model adds around the id graph: splitting, lower-casing, lookups.

Each method emits the nodes of one step (see the package docstring for the whole pipeline)
and returns the name of its result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from bilstm.core.vocab import PAD_ID, UNK_ID
from bilstm.export.builder import GraphBuilder
from bilstm.export.standalone.casing import (
    CAPITAL_SIGMA,
    CASED,
    FINAL_SIGMA,
    IGNORABLE,
    OTHER,
    lowercase_table,
    sigma_context_table,
)
from bilstm.export.standalone.names import ML, MS, PAD, TOKEN_KEYS, TOKENS
from bilstm.runtime import metadata as md


def tensor_info(name: str, elem: int, dims: Sequence[str | int] | None) -> onnx.ValueInfoProto:
    """A graph input/output declaration; `dims` None: rank unknown."""
    return helper.make_tensor_value_info(name, elem, None if dims is None else list(dims))


def strings(values: Sequence[str]) -> np.ndarray:
    """A numpy string array, as ONNX string tensors are built from."""
    return np.array(list(values), dtype=object)


class NodeBuilder:
    """Preprocessing and postprocessing nodes around the id graph."""

    def __init__(self, opset: int) -> None:
        self.g = GraphBuilder(opset, prefix="sa_")
        self.opset = opset
        self.value_info: list[onnx.ValueInfoProto] = []
        """Types of the contrib ops' outputs: onnx knows no schema for them, and its
        LabelEncoder shape inference crashes (onnx 1.23) on an input of unknown type."""

    def const(self, base: str, value: Any) -> str:
        """An initializer holding `value`; returns its name."""
        return self.g.const(base, value if isinstance(value, np.ndarray) else np.asarray(value))

    def i64(self, base: str, values: Sequence[int] | int) -> str:
        """An int64 initializer (shapes, axes, ids)."""
        return self.const(base, np.asarray(values, dtype=np.int64))

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        """One node with a single output, named `out` or generated; returns that name."""
        return str(self.g.op(op_type, inputs, [out] if out else 1, **attrs))

    def lookup(
        self,
        x: str,
        keys: Sequence[str] | Sequence[int],
        values: Sequence[str] | Sequence[int],
        default: str | int,
        out: str | None = None,
    ) -> str:
        """ai.onnx.ml LabelEncoder: keys -> values, anything else -> default."""
        attrs: dict[str, Any] = {}
        attrs["keys_strings" if isinstance(keys[0], str) else "keys_int64s"] = list(keys)
        if isinstance(default, str):
            attrs |= {"values_strings": list(values), "default_string": default}
        else:
            attrs |= {"values_int64s": list(values), "default_int64": default}
        return self.op("LabelEncoder", [x], out, domain=ML, **attrs)

    def tokenize(self, x: str, tokenexp: str, dims: list[str], out: str | None = None) -> str:
        """com.microsoft Tokenizer: the matches of `tokenexp` along a new last axis, "" pads."""
        name = self.op(
            "Tokenizer",
            [x],
            out,
            domain=MS,
            mark=0,
            mincharnum=1,
            pad_value=PAD,
            tokenexp=tokenexp,
        )
        self.value_info.append(tensor_info(name, TensorProto.STRING, dims))
        return name

    def shape_part(self, x: str, start: int, end: int) -> str:
        """Dimensions start..end of `x`'s shape, as a 1-D int64 tensor."""
        return self.op(
            "Slice", [self.op("Shape", [x]), self.i64("s", [start]), self.i64("e", [end])]
        )

    def blanks(self, dims: list[str]) -> str:
        """A tensor of "" of the shape given by the concatenated 1-D shape pieces `dims`."""
        shape = self.op("Concat", dims, axis=0) if len(dims) > 1 else dims[0]
        return self.op("Expand", [self.const("empty", strings([PAD])), shape])

    def split(self, text: str, pattern: str, max_length: int) -> str:
        """tokens[batch, width]: width = min(max(most tokens, 1), max_length), "" padded."""
        found = self.tokenize(text, pattern, ["batch", "matches"])
        batch = self.op("Shape", [text])
        padded = self.op("Concat", [found, self.blanks([batch, self.i64("one", [1])])], axis=1)
        width = self.op(
            "Min",
            [
                self.op("Max", [self.shape_part(found, 1, 2), self.i64("one", [1])]),
                self.i64("max_length", [max_length]),
            ],
        )
        return self.op(
            "Slice", [padded, self.i64("zero", [0]), width, self.i64("axis", [1])], TOKENS
        )

    def characters(self, tokens: str) -> str:
        """chars[batch, time, width]: the characters of each token, "" padded, width >= 1.

        Where no token has a character (every text of the batch without tokens) the width
        would be 0, and ONNX Runtime's `Scan` over that axis fails or crashes the process: one
        "" column is kept then, which the lookups, lower-casing and joining all ignore.
        """
        found = self.tokenize(tokens, ".", ["batch", "time", "chars"])
        shape = self.op("Shape", [tokens])
        padded = self.op("Concat", [found, self.blanks([shape, self.i64("one", [1])])], axis=2)
        width = self.op("Max", [self.shape_part(found, 2, 3), self.i64("one", [1])])
        return self.op("Slice", [padded, self.i64("zero", [0]), width, self.i64("axis", [2])])

    def lower(self, tokens: str, chars: str, final_sigma: bool) -> str:
        """Python's `str.lower` of each token: per character, then joined."""
        keys, values = lowercase_table()
        changed = self.op(
            "Cast", [self.lookup(chars, keys, [1] * len(keys), 0)], to=TensorProto.BOOL
        )
        low = self.op("Where", [changed, self.lookup(chars, keys, values, PAD), chars])
        if final_sigma:
            low = self.op(
                "Where",
                [
                    self.final_sigma(tokens, chars),
                    self.const("final", strings([FINAL_SIGMA])),
                    low,
                ],
            )
        body = GraphBuilder(self.opset, prefix="sa_join_")
        i, cond, acc = "sa_join_i", "sa_join_cond", "sa_join_acc"
        column = body.op("Gather", [low, i], axis=2)
        acc_out = body.op("StringConcat", [acc, column])
        cond_out = body.op("Identity", [cond])
        graph = helper.make_graph(
            body.nodes,
            "join_characters",
            inputs=[
                tensor_info(i, TensorProto.INT64, []),
                tensor_info(cond, TensorProto.BOOL, []),
                tensor_info(acc, TensorProto.STRING, None),
            ],
            outputs=[
                tensor_info(cond_out, TensorProto.BOOL, []),
                tensor_info(acc_out, TensorProto.STRING, None),
            ],
            initializer=body.initializers,
        )
        trips = self.op("Squeeze", [self.shape_part(chars, 2, 3), self.i64("axes", [0])])
        start = self.blanks([self.op("Shape", [tokens])])
        return self.op("Loop", [trips, "", start], TOKEN_KEYS, body=graph)

    def final_sigma(self, tokens: str, chars: str) -> str:
        """Bool [batch, width, chars]: a capital sigma that Python lower-cases to "ς"."""
        keys, classes = sigma_context_table()
        cls = self.lookup(chars, [*keys, PAD], [*classes, IGNORABLE], OTHER)
        start = self.op(
            "ConstantOfShape",
            [self.op("Shape", [tokens])],
            value=helper.make_tensor("false", TensorProto.BOOL, [1], [False]),
        )
        before = self._scan_cased(cls, start, reverse=False)
        after = self._scan_cased(cls, start, reverse=True)
        sigma = self.op("Cast", [self.lookup(chars, [CAPITAL_SIGMA], [1], 0)], to=TensorProto.BOOL)
        return self.op("And", [self.op("And", [sigma, before]), self.op("Not", [after])])

    def _scan_cased(self, cls: str, start: str, reverse: bool) -> str:
        """Per character: is the nearest non-case-ignorable character before (after) it cased?"""
        tag = "after" if reverse else "before"
        body = GraphBuilder(self.opset, prefix=f"sa_{tag}_")
        seen, c = f"sa_{tag}_seen", f"sa_{tag}_class"
        relevant = body.op(
            "Not", [body.op("Equal", [c, body.const("ign", np.array(IGNORABLE, np.int64))])]
        )
        cased = body.op("Equal", [c, body.const("cased", np.array(CASED, np.int64))])
        new = body.op(
            "Or",
            [
                body.op("And", [relevant, cased]),
                body.op("And", [body.op("Not", [relevant]), seen]),
            ],
        )
        out = body.op("Identity", [seen])
        graph = helper.make_graph(
            body.nodes,
            f"cased_{tag}",
            inputs=[
                tensor_info(seen, TensorProto.BOOL, None),
                tensor_info(c, TensorProto.INT64, None),
            ],
            outputs=[
                tensor_info(new, TensorProto.BOOL, None),
                tensor_info(out, TensorProto.BOOL, None),
            ],
            initializer=body.initializers,
        )
        attrs: dict[str, Any] = {
            "num_scan_inputs": 1,
            "scan_input_axes": [2],
            "scan_output_axes": [2],
        }
        if reverse:
            attrs |= {"scan_input_directions": [1], "scan_output_directions": [1]}
        _, result = self.g.op("Scan", [start, cls], 2, body=graph, **attrs)
        return str(result)

    def char_ids(self, tokens: str, chars: str, alphabet: Sequence[str], width: int) -> str:
        """char_ids[batch, time, width]: characters of each token (case kept), 0-padded."""
        block = self.blanks([self.op("Shape", [tokens]), self.i64("width", [width])])
        fitted = self.op(
            "Slice",
            [
                self.op("Concat", [chars, block], axis=2),
                self.i64("zero", [0]),
                self.i64("width", [width]),
                self.i64("axis", [2]),
            ],
        )
        return self.lookup(
            fitted, [*alphabet, PAD], [*range(len(alphabet)), PAD_ID], UNK_ID, md.CHAR_IDS
        )
