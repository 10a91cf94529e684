"""A small ONNX graph builder: unique names, initializers, opset-aware helpers."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


class GraphBuilder:
    """Collects nodes and initializers with unique names."""

    def __init__(self, opset: int, prefix: str = "") -> None:
        self.opset = opset
        self.prefix = prefix  # subgraphs get their own prefix: names must be unique across scopes
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, base: str) -> str:
        self._count += 1
        return f"{self.prefix}{base}_{self._count}"

    def const(self, base: str, value: np.ndarray) -> str:
        """Add an initializer and return its name."""
        name = self._name(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(
        self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, **attrs: Any
    ) -> Any:
        """Add a node; returns its output name (or names when it has several)."""
        names = (
            outputs
            if isinstance(outputs, list)
            else [self._name(op_type.lower()) for _ in range(outputs)]
        )
        self.nodes.append(
            helper.make_node(op_type, inputs, names, name=self._name(op_type), **attrs)
        )
        return names[0] if len(names) == 1 else names

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: int = 0) -> str:
        """Reduce* with axes as attribute or input, as the opset wants."""
        axes_as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if axes_as_input:
            return str(
                self.op(
                    op_type, [x, self.const("axes", np.array(axes, np.int64))], keepdims=keepdims
                )
            )
        return str(self.op(op_type, [x], axes=axes, keepdims=keepdims))

    def unsqueeze(self, x: str, axes: list[int]) -> str:
        """Unsqueeze with axes as an input (opset >= 13)."""
        return str(self.op("Unsqueeze", [x, self.const("axes", np.array(axes, np.int64))]))
