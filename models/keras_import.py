"""Keras 3 bidirectional models (`.keras` files) -> bilstm checkpoints, proven against Keras.

What is mapped (anything else is refused, naming the layer):

    Embedding(mask_zero=True)
    -> Dropout / SpatialDropout1D / GaussianDropout / GaussianNoise (identity at inference)
    -> Bidirectional(LSTM | GRU(reset_after=True), merge_mode concat|sum|mul|ave), stacked,
       the same cell, units and merge mode in every layer
    -> classify: the last layer's final states (return_sequences=False), or
       GlobalAveragePooling1D / GlobalMaxPooling1D over its sequence
       -> Dense(classes, softmax | linear) or Dense(1, sigmoid) [-> Activation(softmax)]
    -> tag: Dense / TimeDistributed(Dense) on the sequence (return_sequences=True)

The weights are converted, not reinterpreted: Keras stores kernels as [input, gates * units]
(PyTorch: [gates * units, input]); Keras' LSTM gate order i, f, c, o is PyTorch's i, f, g, o,
with one bias (PyTorch's recurrent bias is then zero); Keras' GRU gate order is z, r, h
against PyTorch's r, z, n, and its `reset_after` bias is [input bias, recurrent bias], which
is exactly PyTorch's b_ih / b_hh. A sigmoid output Dense(1) becomes a two-class softmax
(logits 0 and z: softmax gives 1 - sigmoid(z), sigmoid(z)), so `bilstm-run` reports a label.

Every import then runs Keras' own `predict` and the converted PyTorch model on ragged, masked
batches and raises `ParityError` on a difference over the tolerance (`export/parity.py`'s
checker). Keras loads lazily with `KERAS_BACKEND=torch` unless the user set a backend.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bilstm.core.errors import CheckpointError, InputError, KerasImportError
from bilstm.core.outpaths import same_file
from bilstm.core.tokenizer import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_PATTERN,
    WHITESPACE_PATTERN,
    PatternError,
    Tokenizer,
    TokenizerConfig,
    check_pattern,
)
from bilstm.core.vocab import PAD, PAD_ID, UNK, UNK_ID, Vocabulary
from bilstm.export.parity import Case, ParityReport, Tolerance, compare_cases
from bilstm.export.verify import FP32_TOLERANCE
from bilstm.models.checkpoint import (
    CONFIG,
    OWN_FILES,
    Checkpoint,
    is_checkpoint_config,
    save_checkpoint,
)
from bilstm.models.config import ModelConfig, TrainConfig
from bilstm.models.network import build_model
from bilstm.runtime import metadata as md

log = logging.getLogger(__name__)

DEFAULT_OOV_TOKEN = "[UNK]"
"""The out-of-vocabulary token of Keras' TextVectorization and StringLookup."""

IDENTITY_LAYERS = frozenset({"Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise"})
"""Layers that only act in training: nothing to map at inference."""

NEEDS_TENSORFLOW = frozenset({"TextVectorization", "StringLookup", "IntegerLookup", "Hashing"})
"""Keras 3 preprocessing layers that cannot even be loaded without TensorFlow."""

PARITY_SHAPES: tuple[tuple[int, int], ...] = ((6, 13), (4, 5), (1, 1), (3, 31))
"""(batch, time) of the random parity batches: ragged rows, a single step, a single row."""


# -- reading the .keras file ---------------------------------------------------------------------


def keras_module() -> Any:
    """`import keras` with the torch backend unless KERAS_BACKEND says otherwise."""
    # Keras reads the variable once, on its first import: set it before, never override a
    # user's choice (TensorFlow or JAX work as well where installed).
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError as exc:
        backend = os.environ["KERAS_BACKEND"]
        raise KerasImportError(
            f"importing a Keras model needs keras 3 and its backend {backend!r} "
            f"(KERAS_BACKEND) ({exc}); install keras with `pip install 'bilstm[keras]'` and "
            "leave KERAS_BACKEND unset (or 'torch') to run it on the torch backend that "
            "training installs"
        ) from None
    major = int(str(keras.__version__).split(".")[0])
    if major < 3:
        raise KerasImportError(
            f"keras {keras.__version__} is installed; this import reads Keras 3 `.keras` "
            "files: `pip install 'keras>=3'`"
        )
    return keras


def _walk_objects(node: Any, layer: str, found: list[tuple[str, str, str]]) -> None:
    """Every serialized object in a Keras config: (enclosing layer, class, module)."""
    if isinstance(node, dict):
        if "class_name" in node and "module" in node:  # a serialized object, not a tensor
            inner = node.get("config")
            name = inner.get("name") if isinstance(inner, dict) else None
            if isinstance(name, str):
                layer = name
            found.append((layer, str(node["class_name"]), str(node["module"])))
        for value in node.values():
            _walk_objects(value, layer, found)
    elif isinstance(node, list):
        for value in node:
            _walk_objects(value, layer, found)


def scan_archive(path: Path) -> dict[str, Any]:
    """The archive's config.json, after refusing custom objects and TensorFlow-only layers.

    Done before Keras loads the file: loading a custom class would fail with Keras' own
    message (or run the user's code), and a TextVectorization layer needs TensorFlow.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json").decode("utf-8"))
    except FileNotFoundError:
        raise KerasImportError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise KerasImportError(
            f"{path}: not a Keras 3 `.keras` file ({exc}); save the model with "
            "`model.save('model.keras')` (legacy .h5 and SavedModel folders are not read)"
        ) from None
    found: list[tuple[str, str, str]] = []
    _walk_objects(config, "the model", found)
    for layer, cls, module in found:
        if cls in NEEDS_TENSORFLOW:
            raise KerasImportError(
                f"{path}: layer '{layer}' ({cls}) needs TensorFlow to load. Save the model "
                "from its Embedding on (without the string preprocessing) and pass the "
                "vocabulary as --vocab: `open('vocab.txt', 'w').write('\\n'.join("
                "layer.get_vocabulary()))` writes it in the expected format"
            )
        # Built-in objects live in keras' own modules; a custom layer, activation or
        # initializer names the user's module (registered or not).
        if not module.startswith("keras"):
            raise KerasImportError(
                f"{path}: layer '{layer}' uses a custom {cls} (from {module}); only built-in "
                "Keras layers and functions are mapped"
            )
    return dict(config)


def load_keras_model(path: Path) -> tuple[Any, dict[str, Any]]:
    """The Keras model in `path` (a `.keras` file), loaded without compiling, in safe mode,
    and its saved config.json."""
    path = Path(path)
    config = scan_archive(path)
    keras = keras_module()
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True), config
    except (ValueError, TypeError, KeyError, AttributeError, ImportError, OSError) as exc:
        raise KerasImportError(f"{path}: Keras cannot load it ({exc})") from None


# -- the model's structure in this project's terms ----------------------------------------------


@dataclass
class RNNWeights:
    """One direction of one layer in PyTorch's layout (`nn.LSTM`/`nn.GRU` parameter names)."""

    weight_ih: np.ndarray
    weight_hh: np.ndarray
    bias_ih: np.ndarray
    bias_hh: np.ndarray


@dataclass
class KerasPlan:
    """What a Keras model is in this project's terms, weights already converted."""

    cell: str
    units: int
    merge: str
    embedding: np.ndarray
    """[rows, dim], Keras' row order (row 0 padding)."""
    layers: list[tuple[RNNWeights, RNNWeights]]
    """(forward, backward) per stacked layer."""
    per_token: bool
    """Tagger (a label per token) rather than classifier."""
    pooling: str
    dense_kernel: np.ndarray
    """[features, outputs] as Keras stores it."""
    dense_bias: np.ndarray
    activation: str
    """Of the Keras output: softmax, sigmoid (one unit) or linear."""
    mask_exact: bool = True
    """False when a layer ignores Keras' mask (GlobalMaxPooling1D): padding then changes
    Keras' own result, so the parity reference runs each length without padding."""
    layer_names: list[str] = field(default_factory=list)

    @property
    def num_outputs(self) -> int:
        """Output width in this project: classes/tags (a sigmoid unit becomes two classes)."""
        return 2 if self.activation == "sigmoid" else int(self.dense_kernel.shape[1])


def _kind(layer: Any) -> str:
    """The built-in Keras class of `layer`, refusing subclasses defined elsewhere."""
    cls = type(layer)
    if not cls.__module__.startswith("keras."):
        raise KerasImportError(
            f"layer '{layer.name}' is a custom class {cls.__module__}.{cls.__name__}; only "
            "built-in Keras layers are mapped"
        )
    return cls.__name__


def _numpy(variable: Any) -> np.ndarray:
    return np.asarray(variable.numpy(), dtype=np.float32)


def _refuse(layer: Any, why: str) -> KerasImportError:
    return KerasImportError(f"layer '{layer.name}' ({type(layer).__name__}): {why}")


def _rnn_weights(rnn: Any, cell: str, units: int) -> RNNWeights:
    """Keras cell weights -> PyTorch layout (see the module docstring for the gate orders)."""
    kernel = _numpy(rnn.cell.kernel)
    recurrent = _numpy(rnn.cell.recurrent_kernel)
    gates = 4 if cell == "lstm" else 3
    if cell == "lstm":
        # i, f, c, o in Keras is i, f, g, o in PyTorch: the blocks stay in place.
        order = np.arange(gates * units)
    else:
        # Keras z, r, h -> PyTorch r, z, n.
        order = np.concatenate(
            [np.arange(units, 2 * units), np.arange(units), np.arange(2 * units, 3 * units)]
        )
    zeros = np.zeros(gates * units, np.float32)
    if not rnn.cell.use_bias:
        bias_ih, bias_hh = zeros, zeros
    elif cell == "lstm":
        bias_ih, bias_hh = _numpy(rnn.cell.bias), zeros
    else:
        both = _numpy(rnn.cell.bias)  # reset_after: [2, 3 * units] = input, recurrent
        bias_ih, bias_hh = both[0][order], both[1][order]
    return RNNWeights(
        weight_ih=np.ascontiguousarray(kernel[:, order].T),
        weight_hh=np.ascontiguousarray(recurrent[:, order].T),
        bias_ih=np.ascontiguousarray(bias_ih),
        bias_hh=np.ascontiguousarray(bias_hh),
    )


def _check_rnn(outer: Any, rnn: Any, backwards: bool) -> str:
    """Refuse what the fused bidirectional layer cannot compute; returns lstm or gru."""
    kind = _kind(rnn)
    if kind not in ("LSTM", "GRU"):
        raise _refuse(outer, f"wraps a {kind}; only LSTM and GRU are mapped")
    cfg = rnn.get_config()
    problems = [
        (
            cfg.get("stateful"),
            "stateful=True carries state between batches; rebuild it "
            "with stateful=False (same weights) before importing",
        ),
        (cfg.get("return_state"), "return_state=True is not mapped"),
        (
            bool(cfg.get("go_backwards")) != backwards,
            f"its {'backward' if backwards else 'forward'} layer has go_backwards="
            f"{not backwards} (the directions are swapped); rebuild it with Bidirectional's "
            "defaults",
        ),
        (
            cfg.get("activation") != "tanh",
            f"activation {cfg.get('activation')!r} is not "
            "mapped (ONNX's fused LSTM/GRU and PyTorch use tanh)",
        ),
        (
            cfg.get("recurrent_activation") != "sigmoid",
            "recurrent_activation "
            f"{cfg.get('recurrent_activation')!r} is not mapped (only sigmoid)",
        ),
        (
            kind == "GRU" and not cfg.get("reset_after", True),
            "GRU with reset_after=False "
            "applies the reset gate before the recurrent matrix, which PyTorch's and ONNX's GRU "
            "do not; rebuild it with reset_after=True (the Keras 2+ default) and retrain",
        ),
    ]
    for bad, why in problems:
        if bad:
            raise _refuse(outer, why)
    return kind.lower()


def _bidirectional(layer: Any) -> tuple[str, int, str, bool, tuple[RNNWeights, RNNWeights]]:
    """(cell, units, merge, return_sequences, weights) of a Bidirectional layer."""
    merge = layer.merge_mode
    if merge not in ("concat", "sum", "mul", "ave"):
        raise _refuse(layer, f"merge_mode {merge!r} is not mapped (concat, sum, mul or ave)")
    fwd, bwd = layer.forward_layer, layer.backward_layer
    cell = _check_rnn(layer, fwd, backwards=False)
    if _check_rnn(layer, bwd, backwards=True) != cell or fwd.units != bwd.units:
        raise _refuse(layer, "its backward layer is not the same cell and size as its forward")
    if bool(fwd.return_sequences) != bool(bwd.return_sequences):
        raise _refuse(layer, "its two directions differ in return_sequences")
    units = int(fwd.units)
    weights = (_rnn_weights(fwd, cell, units), _rnn_weights(bwd, cell, units))
    return cell, units, merge, bool(fwd.return_sequences), weights


def _histories(node: Any) -> list[str]:
    """Names of the layers whose outputs a serialized call argument refers to."""
    if isinstance(node, dict):
        history = node.get("config", {}).get("keras_history") if "class_name" in node else None
        if isinstance(history, list) and history:
            return [str(history[0])]
        return [name for value in node.values() for name in _histories(value)]
    if isinstance(node, list):
        return [name for value in node for name in _histories(value)]
    return []


def chain_names(config: dict[str, Any]) -> list[str]:
    """The layer names of a straight-chain model from its saved config, refusing the rest.

    Read from config.json rather than Keras' live node graph, whose internals (the mask passed
    along as a second input, nodes added by symbolic calls) vary between Keras versions.
    """
    kind = config.get("class_name")
    inner = config.get("config") or {}
    entries = inner.get("layers") or []
    if kind == "Sequential":
        return [e["config"]["name"] for e in entries if e.get("class_name") != "InputLayer"]
    if kind != "Functional":
        raise KerasImportError(
            f"model class {kind!r} is not mapped: save a Sequential or Functional model"
        )
    chain: list[str] = []
    previous: str | None = None
    for entry in entries:
        name, cls = str(entry.get("name")), entry.get("class_name")
        if cls == "InputLayer":
            if previous is not None:
                raise KerasImportError(f"model input '{name}': only one input is mapped")
            previous = name
            continue
        if cls == "NotEqual":  # Keras' own mask of mask_zero (ids != 0), passed as `mask`
            continue
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) != 1:
            raise KerasImportError(
                f"layer '{name}' ({cls}) is called {len(nodes)} times; only a straight chain "
                "of layers, each called once, is mapped"
            )
        if _histories(nodes[0].get("args", [])) != [previous]:
            raise KerasImportError(
                f"layer '{name}' ({cls}) does not take the previous layer's output; only a "
                "straight chain (Sequential, or a Functional model without branches) is mapped"
            )
        chain.append(name)
        previous = name
    outputs = inner.get("output_layers")
    if set(_histories_of_refs(outputs)) != {previous}:  # a merge_mode=None layer has two
        raise KerasImportError(
            f"model '{inner.get('name')}': its output is not its last layer's "
            f"('{previous}'); only one output, from the end of the chain, is mapped"
        )
    return chain


def _histories_of_refs(refs: Any) -> list[str]:
    """["dense", 0, 0] or [["dense", 0, 0], ...] -> the layer names."""
    if isinstance(refs, list) and refs and isinstance(refs[0], str):
        return [refs[0]]
    if isinstance(refs, list):
        return [name for ref in refs for name in _histories_of_refs(ref)]
    return []


def _chain(model: Any, config: dict[str, Any]) -> list[Any]:
    """The model's layers in chain order (`chain_names`)."""
    names = chain_names(config)
    keras = keras_module()
    by_name = {x.name: x for x in model.layers if not isinstance(x, keras.layers.InputLayer)}
    if sorted(by_name) != sorted(names):
        raise KerasImportError(
            f"model '{model.name}': its layers {sorted(by_name)} are not the saved chain "
            f"{names}; save it again with model.save('model.keras')"
        )
    return [by_name[n] for n in names]


@dataclass
class _Walk:
    """The state of `plan_from_keras` while it walks the layer chain after the Embedding."""

    stack: list[tuple[RNNWeights, RNNWeights]] = field(default_factory=list)
    cell: str = ""
    merge: str = ""
    units: int = 0
    sequences: bool = True
    pooling: str = "last"
    mask_exact: bool = True
    dense: Any = None
    activation: str = ""

    def step(self, layer: Any) -> None:
        """Take one layer into the plan, or refuse it with its name and why."""
        kind = _kind(layer)
        if kind in IDENTITY_LAYERS:
            return
        if self.dense is not None:
            self._after_output(layer, kind)
        elif kind == "Bidirectional":
            self._bidirectional(layer)
        elif kind in ("LSTM", "GRU", "SimpleRNN", "RNN"):
            backwards = " reading backwards (go_backwards=True)" if layer.go_backwards else ""
            raise _refuse(
                layer,
                f"a single-direction recurrent layer{backwards}; this network is bidirectional "
                "in every layer: wrap it in Bidirectional(...) and retrain",
            )
        elif not self.stack:
            raise _refuse(layer, "comes before any Bidirectional(LSTM/GRU) layer; not mapped")
        elif kind in ("GlobalAveragePooling1D", "GlobalMaxPooling1D") and self.sequences:
            self._pooling(layer, kind)
        else:
            self._head(layer, kind)

    def _after_output(self, layer: Any, kind: str) -> None:
        if kind == "Activation" and self.activation == "linear":
            if layer.get_config().get("activation") == "softmax":
                self.activation = "softmax"
                return
        raise _refuse(layer, "follows the output Dense layer; nothing is mapped after it")

    def _bidirectional(self, layer: Any) -> None:
        if not self.sequences or self.pooling != "last":
            raise _refuse(layer, "follows a layer that already reduced the sequence")
        c, u, m, self.sequences, weights = _bidirectional(layer)
        if self.stack and (c, u, m) != (self.cell, self.units, self.merge):
            raise _refuse(
                layer,
                f"is {c} {u} units merge {m} after {self.cell} {self.units} units merge "
                f"{self.merge}; this network uses one cell type, size and merge mode for every "
                "layer",
            )
        self.cell, self.units, self.merge = c, u, m
        self.stack.append(weights)
        if not self.sequences:
            self.pooling = "last"

    def _pooling(self, layer: Any, kind: str) -> None:
        pool_cfg = layer.get_config()
        if pool_cfg.get("keepdims") or pool_cfg.get("data_format") == "channels_first":
            raise _refuse(layer, "keepdims=True or channels_first is not mapped")
        self.pooling = "mean" if kind == "GlobalAveragePooling1D" else "max"
        # Keras' max pooling ignores the mask: padded zeros take part in the max.
        self.mask_exact = kind == "GlobalAveragePooling1D"
        self.sequences = False

    def _head(self, layer: Any, kind: str) -> None:
        inner = layer.layer if kind == "TimeDistributed" else layer
        if kind == "TimeDistributed" and (not self.sequences or _kind(inner) != "Dense"):
            raise _refuse(layer, "only TimeDistributed(Dense) on a sequence is mapped")
        if _kind(inner) != "Dense":
            raise _refuse(layer, "is not a layer this import maps (see docs/keras-import.md)")
        self.dense, self.activation = inner, _dense_activation(layer, inner)


def _embedding(model: Any, layers: Sequence[Any]) -> Any:
    """The chain's first layer, which must be an Embedding with mask_zero=True."""
    if not layers or _kind(layers[0]) != "Embedding":
        first = f"'{layers[0].name}' ({type(layers[0]).__name__})" if layers else "nothing"
        raise KerasImportError(
            f"model '{model.name}' starts with {first}; the import maps models that start "
            "with an Embedding layer on token ids"
        )
    if not layers[0].mask_zero:
        raise _refuse(
            layers[0],
            "mask_zero=False: the model reads padding (id 0) as a token, so its "
            "output depends on how much padding a batch has and no exact length-aware model "
            "exists. Build it with Embedding(..., mask_zero=True) and retrain (the weights "
            "load unchanged, the results do not)",
        )
    return layers[0]


def plan_from_keras(model: Any, config: dict[str, Any]) -> KerasPlan:
    """Walk a loaded Keras model (`config`: its saved config.json) and convert its weights,
    refusing what is not mapped."""
    layers = _chain(model, config)
    embedding = _embedding(model, layers)
    walk = _Walk()
    for layer in layers[1:]:
        walk.step(layer)
    if walk.dense is None:
        raise KerasImportError(
            f"model '{model.name}': no output Dense layer after the recurrent layers"
        )
    dense = walk.dense
    kernel = _numpy(dense.kernel)
    bias = _numpy(dense.bias) if dense.use_bias else np.zeros(kernel.shape[1], np.float32)
    return KerasPlan(
        cell=walk.cell,
        units=walk.units,
        merge=walk.merge,
        embedding=_numpy(embedding.embeddings),
        layers=walk.stack,
        per_token=walk.sequences,
        pooling="last" if walk.sequences else walk.pooling,
        dense_kernel=kernel,
        dense_bias=bias,
        activation=walk.activation,
        mask_exact=walk.mask_exact,
        layer_names=[layer.name for layer in layers],
    )


def _dense_activation(outer: Any, dense: Any) -> str:
    act = dense.get_config().get("activation")
    units = int(dense.units)
    if act in ("softmax", "linear"):
        return str(act)
    if act == "sigmoid" and units == 1:
        return "sigmoid"
    if act == "sigmoid":
        raise _refuse(
            outer,
            f"sigmoid over {units} units is multi-label classification, which bilstm "
            "does not model (one label per text or token); only Dense(1, sigmoid) is mapped",
        )
    raise _refuse(
        outer, f"activation {act!r} is not mapped (softmax, linear, or sigmoid on 1 unit)"
    )


# -- vocabulary, labels, examples ---------------------------------------------------------------


def _lines(path: Path, what: str) -> list[str]:
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise KerasImportError(f"{path}: no such {what} file") from None
    except UnicodeDecodeError as exc:
        raise KerasImportError(f"{path}: the {what} file is not UTF-8 ({exc})") from None
    except OSError as exc:
        raise KerasImportError(f"{path}: cannot read the {what} file ({exc})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not add one
    return [line.removesuffix("\r") for line in lines]


def read_vocab(path: Path, rows: int, oov_token: str) -> tuple[list[str], np.ndarray]:
    """Tokens in this project's id order and `order` (our id -> Keras Embedding row).

    The file has one token per line, line N = Embedding row N - 1. Row 0 is padding (Keras'
    mask_zero); its line is read but not used. The row of `oov_token` (where the Keras
    pipeline sends unknown words) becomes id 1, <unk>; the other rows keep their order.
    """
    tokens = _lines(path, "vocabulary")
    if len(tokens) < 2:
        raise KerasImportError(
            f"{path}: {len(tokens)} line(s); a vocabulary has one token per line, line 1 for "
            "padding (id 0), then the out-of-vocabulary token and the words"
        )
    if len(tokens) > rows:
        raise KerasImportError(
            f"{path}: {len(tokens)} tokens but the Embedding has {rows} rows; line N must be "
            "row N - 1 of the Embedding (is this the model's vocabulary?)"
        )
    seen: dict[str, int] = {}
    for number, token in enumerate(tokens[1:], start=2):
        if not token:
            raise KerasImportError(
                f"{path}:{number}: empty token; every line after the first (padding) must "
                "hold the token of that Embedding row"
            )
        if token in seen:
            raise KerasImportError(f"{path}:{number}: {token!r} repeats line {seen[token]}")
        seen[token] = number
    if oov_token not in seen:
        raise KerasImportError(
            f"{path}: no out-of-vocabulary token {oov_token!r}. Name the token whose row "
            "unknown words get with --oov-token (TextVectorization/StringLookup: '[UNK]'; "
            "Keras' Tokenizer: its oov_token). A pipeline that drops unknown words has no "
            "such row and cannot be mapped: bilstm keeps every word"
        )
    oov_row = seen[oov_token] - 1
    order = [PAD_ID, oov_row, *(r for r in range(1, len(tokens)) if r != oov_row)]
    ours = [PAD, UNK, *(tokens[r] for r in order[2:])]
    for special in (PAD, UNK):
        if special in ours[2:]:
            raise KerasImportError(
                f"{path}:{seen[special]}: {special!r} is this project's reserved token for id "
                f"{PAD_ID if special == PAD else UNK_ID}; it may only be the padding line"
            )
    return ours, np.asarray(order, dtype=np.int64)


def read_labels(path: Path | None, count: int) -> list[str]:
    """Labels from a file (one per line, line N = output N - 1) or "0".."count-1"."""
    if path is None:
        return [str(i) for i in range(count)]
    labels = _lines(path, "labels")
    if len(labels) != count:
        raise KerasImportError(
            f"{path}: {len(labels)} labels but the model has {count} outputs; give one label "
            "per line, line N for output N - 1"
            + (" (a Dense(1, sigmoid) model has two: the 0 and the 1 class)" if count == 2 else "")
        )
    for number, label in enumerate(labels, start=1):
        if not label.strip():
            raise KerasImportError(f"{path}:{number}: empty label")
    if len(set(labels)) != len(labels):
        raise KerasImportError(f"{path}: labels repeat; each output needs its own label")
    return labels


# -- the checkpoint -----------------------------------------------------------------------------


def build_checkpoint(
    plan: KerasPlan,
    tokens: list[str],
    order: np.ndarray,
    labels: list[str],
    tokenizer: TokenizerConfig,
    examples: Sequence[str] = (),
    summary: dict[str, Any] | None = None,
) -> Checkpoint:
    """This project's model with the Keras weights, as a checkpoint (not saved)."""
    cfg = ModelConfig(
        vocab_size=len(tokens),
        num_labels=plan.num_outputs,
        task="tag" if plan.per_token else "classify",
        embedding_dim=int(plan.embedding.shape[1]),
        hidden_size=plan.units,
        num_layers=len(plan.layers),
        cell=plan.cell,
        merge=plan.merge,
        pooling=plan.pooling,
        dropout=0.0,
        embedding_dropout=0.0,
    )
    model = build_model(cfg)
    state = model.state_dict()
    embeddings = [name for name in state if name.endswith("embedding.weight")]
    if len(embeddings) != 1:  # the character CNN is off: one word embedding
        raise CheckpointError(f"expected one word embedding in the network, found {embeddings}")
    values: dict[str, np.ndarray] = {embeddings[0]: plan.embedding[order]}
    for i, (fwd, bwd) in enumerate(plan.layers):
        for suffix, weights in (("", fwd), ("_reverse", bwd)):
            for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                values[f"encoder.layers.{i}.{part}_l0{suffix}"] = getattr(weights, part)
    kernel, bias = plan.dense_kernel.T, plan.dense_bias
    if plan.activation == "sigmoid":
        # softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]: class 1 is Keras' positive class.
        kernel = np.concatenate([np.zeros_like(kernel), kernel])
        bias = np.concatenate([np.zeros_like(bias), bias])
    values["output.weight"], values["output.bias"] = kernel, bias
    missing = sorted(set(state) - set(values))
    if missing:
        raise CheckpointError(f"no Keras weights for {missing}")
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in values.items()})
    model.eval()
    return Checkpoint(
        model=model,
        model_config=cfg,
        train_config=TrainConfig(),
        tokenizer=tokenizer,
        vocabulary=Vocabulary(tokens),
        labels=labels,
        summary=dict(summary or {}),
        examples=list(examples),
    )


# -- parity with Keras --------------------------------------------------------------------------


def ragged_feeds(vocab_size: int, batch: int, time: int, seed: int) -> dict[str, np.ndarray]:
    """Random ids (unknown id 1 included) with lengths 1, 2 and `time` among them."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, time + 1, size=batch)
    lengths[: min(batch, 3)] = [time, 1, 2][: min(batch, 3)]
    lengths = np.minimum(lengths, time)
    ids = rng.integers(1, vocab_size, size=(batch, time))
    ids[np.arange(time)[None, :] >= lengths[:, None]] = PAD_ID
    return {md.INPUT_IDS: ids.astype(np.int64), md.LENGTHS: lengths.astype(np.int64)}


def example_feeds(ckpt: Checkpoint, texts: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The texts tokenized as `bilstm-run` will (empty ones dropped), padded with 0."""
    assert ckpt.tokenizer is not None and ckpt.vocabulary is not None
    tokenizer = Tokenizer(ckpt.tokenizer)
    rows = [ckpt.vocabulary.encode(tokenizer.tokenize(t)) for t in texts]
    rows = [r for r in rows if r]
    if not rows:
        return None
    ids = np.zeros((len(rows), max(map(len, rows))), np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    return {md.INPUT_IDS: ids, md.LENGTHS: np.asarray([len(r) for r in rows], np.int64)}


def keras_reference(
    model: Any, plan: KerasPlan, order: np.ndarray
) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Keras' own `predict` on our feeds, as this project's output (logits or probabilities)."""
    output = md.LOGITS if plan.activation == "linear" else md.PROBABILITIES

    def run(ids: np.ndarray) -> np.ndarray:
        got = np.asarray(model.predict(order[ids], batch_size=len(ids), verbose=0), np.float32)
        if plan.activation == "sigmoid":
            return np.concatenate([1.0 - got, got], axis=-1)
        return got

    def reference(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids, lengths = feeds[md.INPUT_IDS], feeds[md.LENGTHS]
        if plan.mask_exact:
            return {output: run(ids)}
        # Keras' result then depends on the padding: its answer for a text is the one on the
        # text alone, so each length runs as its own unpadded batch.
        result: np.ndarray | None = None
        for n in np.unique(lengths):
            rows = np.flatnonzero(lengths == n)
            got = run(ids[rows, :n])
            if result is None:
                result = np.zeros((len(ids), *got.shape[1:]), np.float32)
            result[rows] = got
        assert result is not None
        return {output: result}

    return reference


def torch_outputs(
    ckpt: Checkpoint, plan: KerasPlan
) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """The converted PyTorch model's logits, or their softmax when Keras outputs probabilities."""

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            logits = ckpt.model(
                torch.from_numpy(feeds[md.INPUT_IDS]), torch.from_numpy(feeds[md.LENGTHS])
            )
        if plan.activation == "linear":
            return {md.LOGITS: logits.numpy()}
        return {md.PROBABILITIES: torch.softmax(logits, dim=-1).numpy()}

    return run


def check_keras_parity(
    model: Any,
    ckpt: Checkpoint,
    plan: KerasPlan,
    order: np.ndarray,
    tolerance: float = FP32_TOLERANCE,
    texts: Sequence[str] = (),
) -> ParityReport:
    """Keras `predict` vs the converted model on ragged masked batches (and `texts`).

    Raises `ParityError` naming every case beyond `tolerance` * (1 + |Keras value|).
    """
    size = ckpt.model_config.vocab_size
    cases = [
        Case(f"random batch={b} time={t}", ragged_feeds(size, b, t, seed))
        for seed, (b, t) in enumerate(PARITY_SHAPES)
    ]
    real = example_feeds(ckpt, texts) if texts else None
    if real is not None:
        shape = real[md.INPUT_IDS].shape
        cases.append(Case(f"examples batch={shape[0]} time={shape[1]}", real, dev=True))
    rule = Tolerance(tolerance, relative=True, name="import")
    report = ParityReport(
        rule=rule,
        cases=compare_cases(
            cases,
            ckpt.task,
            keras_reference(model, plan, order),
            torch_outputs(ckpt, plan),
            None,
            rule,
            label="keras parity",
        ),
        dev_examples=int(real[md.INPUT_IDS].shape[0]) if real is not None else 0,
    )
    report.raise_if_failed("the imported model", reference="Keras")
    return report


# -- the whole import ---------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What an import produced."""

    out: Path
    task: str
    config: ModelConfig
    parity: ParityReport
    layers: list[str]
    vocabulary: int
    dropped_rows: int
    """Embedding rows beyond the vocabulary file (unreachable, left out)."""
    capitalised: int
    """Vocabulary tokens with capitals while the tokenizer lower-cases (they never match)."""


def check_out(out: Path, inputs: Sequence[Path], force: bool) -> None:
    """Refuse, before any work, an OUT_CHECKPOINT whose writing would destroy something.

    OUT is a folder: new, empty, or a bilstm checkpoint (replaced only with `force`; other
    files in it are kept). A file, a folder of other files, or a folder holding an input is
    refused.
    """
    out = Path(out)
    for source in inputs:
        source = Path(source)
        if same_file(out, source) or out.resolve() == source.resolve():
            raise InputError(f"{out}: OUT_CHECKPOINT is the input file {source}; give a new folder")
        if out.resolve() in source.resolve().parents:
            raise InputError(
                f"{out}: OUT_CHECKPOINT holds the input {source}; a checkpoint folder must not "
                "hold the import's inputs. Give a new folder"
            )
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise InputError(
            f"{out}: is a file; OUT_CHECKPOINT names the folder the checkpoint is written to"
        )
    if out.is_dir():
        if is_checkpoint_config(out / CONFIG):
            if not force:
                raise InputError(
                    f"{out}: already holds a bilstm checkpoint; pass --force to replace it "
                    "(other files in the folder are kept) or give another folder"
                )
            return
        others = sorted(p.name for p in out.iterdir())
        if others and not (force and set(others) <= set(OWN_FILES)):
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise InputError(
                f"{out}: a folder that already holds other files ({shown}); give a new or "
                "empty folder"
            )
    existing = out
    while not existing.exists():
        existing = existing.resolve().parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{out}: the folder {existing} is not writable")


def import_keras(
    model_path: Path,
    out: Path,
    *,
    vocab: Path | None,
    labels: Path | None = None,
    oov_token: str = DEFAULT_OOV_TOKEN,
    lowercase: bool = True,
    pattern: str | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    examples: Path | None = None,
    tolerance: float = FP32_TOLERANCE,
    force: bool = False,
) -> ImportReport:
    """Read a Keras 3 `.keras` model, convert it, prove parity with Keras, save a checkpoint.

    `vocab`: one token per line, line N = Embedding row N - 1 (`read_vocab`). `labels`: one
    per line (default "0", "1", ...). `pattern`: the tokenizer's (default: bilstm's word
    pattern for classifiers, whitespace for taggers). `examples`: texts, one per line, checked
    for parity and stored for `bilstm export`'s own check. Raises `KerasImportError` for what
    is not mapped, `ParityError` when Keras and the converted model disagree; OUT is written
    only after parity holds.
    """
    model_path, out = Path(model_path), Path(out)
    inputs = [p for p in (model_path, vocab, labels, examples) if p is not None]
    check_out(out, inputs, force)
    if vocab is None:
        raise KerasImportError(
            f"{model_path}: give the vocabulary with --vocab FILE (one token per line, line N "
            "for Embedding row N - 1); Keras model files do not carry it"
        )
    if max_length < 1:
        raise KerasImportError(f"--max-length must be >= 1, got {max_length}")
    texts = [t for t in _lines(examples, "examples") if t.strip()] if examples else []
    keras_model, config = load_keras_model(model_path)
    plan = plan_from_keras(keras_model, config)
    rows = int(plan.embedding.shape[0])
    tokens, order = read_vocab(vocab, rows, oov_token)
    chosen = pattern or (WHITESPACE_PATTERN if plan.per_token else DEFAULT_PATTERN)
    try:
        check_pattern(chosen)
    except PatternError as exc:
        raise KerasImportError(f"--pattern {chosen!r}: {exc}") from None
    tokenizer = TokenizerConfig(lowercase=lowercase, pattern=chosen, max_length=max_length)
    label_names = read_labels(labels, plan.num_outputs)
    keras = keras_module()
    summary = {
        "data": {"keras_model": model_path.name, "vocabulary": Path(vocab).name},
        "imported": {
            "from": "keras",
            "file": model_path.name,
            "keras_version": str(keras.__version__),
            "keras_backend": str(keras.backend.backend()),
            "layers": plan.layer_names,
            "output_activation": plan.activation,
        },
    }
    ckpt = build_checkpoint(plan, tokens, order, label_names, tokenizer, texts[:64], summary)
    report = check_keras_parity(keras_model, ckpt, plan, order, tolerance, texts)
    ckpt.summary["imported"]["parity"] = report.to_dict()
    save_checkpoint(ckpt, out)
    capitals = sum(1 for t in tokens[2:] if t != t.lower()) if lowercase else 0
    return ImportReport(
        out=out,
        task=ckpt.task,
        config=ckpt.model_config,
        parity=report,
        layers=plan.layer_names,
        vocabulary=len(tokens),
        dropped_rows=rows - len(tokens),
        capitalised=capitals,
    )
