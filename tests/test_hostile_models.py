"""Hostile and broken model files: each is refused with one clear `ModelLoadError`.

The model files are built here with `onnx.helper` (no torch): a tiny classify graph that the
runtime loads like an exported one, then broken on purpose. `runtime/model_guard.py` walks
the protobuf before ONNX Runtime opens the file; these tests hold it, `BiLSTM.load` and the
CLI (exit code 2, one line naming the file, no traceback) to that.
"""

from __future__ import annotations

import json
import os
import random
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bilstm.core.errors import BiLSTMError, MetadataError, ModelLoadError
from bilstm.core.tokenizer import TokenizerConfig
from bilstm.runtime import BiLSTM
from bilstm.runtime.builtin import builtin_models
from bilstm.runtime.cli import _make_apps
from bilstm.runtime.metadata import ModelMetadata
from bilstm.runtime.model_guard import MAX_DEPTH, inspect_model

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # the runtime-only install: tests that build models with onnx skip
    onnx = None

needs_onnx = pytest.mark.skipif(onnx is None, reason="building test models needs onnx")

runner = CliRunner()
_, SINGLE = _make_apps()
SHIPPED = builtin_models()["sentiment"]
VOCAB = ["<pad>", "<unk>", "good", "bad", "film"]
PLACEHOLDER = "PLACEHOLDER-0123456789"


# -- building models ----------------------------------------------------------------------------


def metadata_doc(**changes: Any) -> dict[str, Any]:
    """A valid bilstm metadata document for the tiny model, with top-level keys replaced."""
    doc: dict[str, Any] = json.loads(
        ModelMetadata(
            task="classify",
            labels=["neg", "pos"],
            vocabulary=VOCAB,
            tokenizer=TokenizerConfig(max_length=8),
            toolkit_version="test",
        ).to_json()
    )
    doc.update(changes)
    return doc


def tiny_model(
    path: Path,
    meta: dict[str, Any] | str | None = None,
    *,
    post: list[Any] | None = None,
    functions: tuple[Any, ...] = (),
    opsets: tuple[tuple[str, int], ...] = (),
    external: str | None = None,
    input_name: str = "input_ids",
    time_axis: str = "time",
) -> Path:
    """A classify model the runtime accepts: Gather -> ReduceMean -> MatMul -> post -> Softmax.

    `post` maps "raw" to "logits" (default: Identity). `external` saves the weights in that
    file, relative to the model's folder.
    """
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(size=(len(VOCAB), 4)).astype(np.float32), "emb"),
        numpy_helper.from_array(rng.normal(size=(4, 2)).astype(np.float32), "w"),
    ]
    nodes = [
        helper.make_node("Gather", ["emb", input_name], ["e"], name="embed"),
        helper.make_node("ReduceMean", ["e"], ["m"], axes=[1], keepdims=0, name="pool"),
        helper.make_node("MatMul", ["m", "w"], ["raw"], name="dense"),
        *(post or [helper.make_node("Identity", ["raw"], ["logits"], name="post")]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1, name="softmax"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info(input_name, TensorProto.INT64, ["batch", time_axis]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2]),
        ],
        weights,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)]
        + [helper.make_opsetid(d, v) for d, v in opsets],
        functions=list(functions),
    )
    model.ir_version = 8
    text = metadata_doc() if meta is None else meta
    helper.set_model_props(model, {"bilstm": text if isinstance(text, str) else json.dumps(text)})
    if external is None:
        onnx.save_model(model, str(path))
    else:
        (path.parent / external).parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=external,
            size_threshold=0,
        )
    return path


def edit(path: Path, change: Callable[[Any], None], out: Path | None = None) -> Path:
    """Load a model without its external data, change the proto, write it (to `out`)."""
    model = onnx.load(str(path), load_external_data=False)
    change(model)
    target = out or path
    target.write_bytes(model.SerializeToString())
    return target


def set_location(location: str) -> Callable[[Any], None]:
    def change(model: Any) -> None:
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location

    return change


def replace_bytes(path: Path, old: bytes, new: bytes) -> Path:
    data = path.read_bytes()
    assert old in data and len(old) == len(new)
    path.write_bytes(data.replace(old, new))
    return path


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


# -- checking refusals --------------------------------------------------------------------------


@pytest.fixture
def ort_opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths that ONNX Runtime was asked to open during the test."""
    opened: list[str] = []
    real = ort.InferenceSession

    def spy(path: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    return opened


def refused(model: Path | str, *words: str, kind: type[Exception] = ModelLoadError) -> str:
    """Assert that BiLSTM.load refuses `model` with `kind` and a message naming the file."""
    with pytest.raises(kind) as info:
        BiLSTM.load(model, device="cpu", threads=1)
    message = str(info.value)
    assert str(model) in message
    for word in words:
        assert word in message, message
    assert "\n" not in message
    return message


def cli_refuses(model: Path | str, tmp_path: Path, *words: str) -> str:
    """Assert that `bilstm-run MODEL INPUT` exits 2 with one line naming the file."""
    src = tmp_path / "input.txt"
    src.write_text("good film\n", encoding="utf-8")
    result = runner.invoke(SINGLE, [str(model), str(src)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(model) in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# -- the baseline: what the hostile files are variations of ------------------------------------


@needs_onnx
def test_tiny_model_loads_and_predicts(tmp_path: Path) -> None:
    model = BiLSTM.load(tiny_model(tmp_path / "tiny.onnx"), device="cpu", threads=1)
    out = model.predict(["good film", ""])
    assert out[0].label in ("neg", "pos") and out[1].label is None
    summary = inspect_model(tmp_path / "tiny.onnx")
    assert summary.nodes == 5 and summary.tensors == 2 and summary.domains == {""}


def test_shipped_model_passes_the_guard_in_milliseconds() -> None:
    inspect_model(SHIPPED)  # warm the page cache
    best = min(_timed(lambda: inspect_model(SHIPPED)) for _ in range(5))
    summary = inspect_model(SHIPPED)
    assert summary.nodes > 0 and summary.tensors > 0 and not summary.external_files
    assert best < 0.05, f"the guard took {best * 1e3:.1f} ms on the shipped model"


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


# -- not a model at all -------------------------------------------------------------------------

NOT_ONNX = {
    "text": b"hello, this is a text file\n",
    "json": b'{"task": "classify", "labels": ["neg", "pos"]}',
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(32),
    "zip": b"PK\x03\x04" + bytes(64),
    "zeros": bytes(4096),
    "one byte": b"\x08",
    "random": random.Random(7).randbytes(4096),
    "group wire type": b"\x0b\x0c",
    "graph as a number": b"\x08\x08\x38\x01",
    "no graph": b"\x08\x08\x12\x04test",
    "no ir_version": b"\x3a\x00",
    "overlong varint": b"\x08" + b"\xff" * 11,
}


@pytest.mark.parametrize("data", list(NOT_ONNX.values()), ids=list(NOT_ONNX))
def test_not_a_model_is_refused(data: bytes, tmp_path: Path, ort_opened: list[str]) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    refused(path, "cannot load it as an ONNX model", "not a well-formed protobuf ModelProto")
    assert ort_opened == []
    cli_refuses(path, tmp_path, "cannot load it as an ONNX model")


@pytest.mark.parametrize("fraction", [0.5, 0.01, 0.999])
def test_truncated_real_model_is_refused(
    fraction: float, tmp_path: Path, ort_opened: list[str]
) -> None:
    data = SHIPPED.read_bytes()
    path = tmp_path / "sentiment.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    message = refused(path, "truncated", "bytes long but the file ends")
    assert "re-export the model, or copy the complete file again" in message
    assert ort_opened == []
    cli_refuses(path, tmp_path, "truncated")


@needs_onnx
def test_every_truncation_of_a_model_is_a_clear_error(tmp_path: Path) -> None:
    """Cut the tiny model at every byte: always a BiLSTMError, never a crash."""
    data = tiny_model(tmp_path / "full.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    outcomes: set[str] = set()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(BiLSTMError) as info:
            BiLSTM.load(path, device="cpu", threads=1)
        outcomes.add(type(info.value).__name__)
    assert outcomes <= {"ModelLoadError", "MetadataError"}


def test_empty_file_and_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    refused(empty, "empty")
    cli_refuses(empty, tmp_path, "empty")
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    refused(folder, "is a directory")
    cli_refuses(folder, tmp_path, "is a directory")
    for call in (lambda: inspect_model(empty), lambda: inspect_model(folder)):
        with pytest.raises(ModelLoadError):
            call()


def test_special_file_is_refused(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    with pytest.raises(ModelLoadError, match="not a regular file"):
        inspect_model(fifo)
    with pytest.raises(ModelLoadError):  # never blocks waiting for a writer
        BiLSTM.load(fifo, device="cpu")


def test_big_garbage_file_is_refused_quickly(tmp_path: Path, ort_opened: list[str]) -> None:
    path = tmp_path / "big.onnx"
    path.write_bytes(random.Random(1).randbytes(50 << 20))
    assert _timed(lambda: refused(path, "not a well-formed protobuf")) < 1.0
    assert ort_opened == []
    start = time.perf_counter()
    cli_refuses(path, tmp_path, "cannot load it as an ONNX model")
    assert time.perf_counter() - start < 2.0


def test_file_of_junk_fields_is_refused_quickly(tmp_path: Path) -> None:
    """Millions of tiny well-formed fields at the top level: refused after the first 100,000."""
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\x01" * (5 << 20))
    assert _timed(lambda: refused(path, "more than 100000 fields")) < 1.0


def test_guard_maps_the_file_instead_of_reading_it(tmp_path: Path) -> None:
    """A model with 32 MB of weights is walked with a few KB of Python allocations."""
    tensor = _field(8, b"big") + _field(9, bytes(32 << 20))  # TensorProto name, raw_data
    path = tmp_path / "big.onnx"
    path.write_bytes(b"\x08\x08" + _field(7, _field(5, tensor)))  # ir_version, graph.initializer
    del tensor
    tracemalloc.start()
    try:
        summary = inspect_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.tensors == 1 and summary.graphs == 1
    assert peak < 1 << 20, f"peak Python allocation {peak} bytes"


@pytest.fixture(scope="module")
def mutation_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    folder = tmp_path_factory.mktemp("mutated")
    return folder, tiny_model(folder / "base.onnx").read_bytes()


@needs_onnx
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_guard_on_mutated_models_raises_only_model_load_error(
    data: st.DataObject, mutation_dir: tuple[Path, bytes]
) -> None:
    """Flip, insert, delete and cut bytes of a real model: the guard passes or refuses."""
    folder, base = mutation_dir
    mutated = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        if not mutated:
            break
        pos = data.draw(st.integers(0, len(mutated) - 1), label="position")
        kind = data.draw(st.sampled_from(["set", "insert", "delete", "cut"]), label="kind")
        if kind == "set":
            mutated[pos] = data.draw(st.integers(0, 255), label="byte")
        elif kind == "insert":
            mutated[pos:pos] = data.draw(st.binary(min_size=1, max_size=8), label="bytes")
        elif kind == "delete":
            del mutated[pos : pos + data.draw(st.integers(1, 8), label="length")]
        else:
            del mutated[pos:]
    path = folder / "model.onnx"
    path.write_bytes(bytes(mutated))
    try:
        inspect_model(path)
    except ModelLoadError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)


# -- strings ONNX Runtime hands to Python must be UTF-8 -----------------------------------------


@needs_onnx
@pytest.mark.parametrize("where", ["metadata", "input name", "dim_param"])
def test_invalid_utf8_strings_are_refused(where: str, tmp_path: Path) -> None:
    """ONNX Runtime would raise UnicodeDecodeError from get_modelmeta()/get_inputs() later."""
    path = tmp_path / "model.onnx"
    if where == "metadata":
        doc = metadata_doc(training={"note": PLACEHOLDER})
        tiny_model(path, doc)
    elif where == "input name":
        tiny_model(path, input_name=PLACEHOLDER)
    else:
        tiny_model(path, time_axis=PLACEHOLDER)
    bad = b"\xff\xfe" + PLACEHOLDER.encode()[2:]
    replace_bytes(path, PLACEHOLDER.encode(), bad)
    refused(path, "not valid UTF-8")
    cli_refuses(path, tmp_path, "not valid UTF-8")


# -- external data ------------------------------------------------------------------------------


@needs_onnx
@pytest.mark.parametrize("location", ["weights.bin", "data/weights.bin"])
def test_external_data_inside_the_folder_loads(location: str, tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "model.onnx", external=location)
    assert (tmp_path / location).exists()
    assert inspect_model(path).external_files == {location}
    inline = BiLSTM.load(tiny_model(tmp_path / "inline.onnx"), device="cpu", threads=1)
    model = BiLSTM.load(path, device="cpu", threads=1)
    texts = ["good film", "bad bad film"]
    assert model.predict(texts) == inline.predict(texts)


@pytest.fixture
def split_model(tmp_path: Path) -> tuple[Path, Path]:
    """A model with external data, and a copy of its data file outside the model's folder."""
    models = tmp_path / "models"
    models.mkdir()
    path = tiny_model(models / "model.onnx", external="weights.bin")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "weights.bin").write_bytes((models / "weights.bin").read_bytes())
    return path, outside / "weights.bin"


@needs_onnx
def test_external_data_with_dotdot_is_refused(
    split_model: tuple[Path, Path], tmp_path: Path, ort_opened: list[str]
) -> None:
    path, _ = split_model
    for location in ["../outside/weights.bin", "sub/../../outside/weights.bin", "..\\x.bin"]:
        edit(path, set_location(location))
        refused(path, "contains '..'", "outside its folder")
        cli_refuses(path, tmp_path, "contains '..'")
    assert ort_opened == []


@needs_onnx
def test_external_data_with_absolute_path_is_refused(
    split_model: tuple[Path, Path], tmp_path: Path, ort_opened: list[str]
) -> None:
    path, outside = split_model
    for location in [str(outside), "/etc/passwd", "C:\\Windows\\win.ini", "\\\\host\\share\\w"]:
        edit(path, set_location(location))
        refused(path, "absolute path", repr(location))
        cli_refuses(path, tmp_path, "absolute path")
    assert ort_opened == []


@needs_onnx
def test_external_data_through_an_escaping_symlink_is_refused(
    split_model: tuple[Path, Path], tmp_path: Path, ort_opened: list[str]
) -> None:
    path, outside = split_model
    try:
        (path.parent / "link.bin").symlink_to(outside)
        (path.parent / "linkdir").symlink_to(outside.parent, target_is_directory=True)
        (path.parent / "inside.bin").symlink_to(path.parent / "weights.bin")
    except OSError:
        pytest.skip("cannot create symbolic links here")
    for location in ["link.bin", "linkdir/outside/weights.bin"]:
        edit(path, set_location(location))
        refused(path, "outside the model's folder", "symbolic link")
        cli_refuses(path, tmp_path, "outside the model's folder")
    assert ort_opened == []
    edit(path, set_location("inside.bin"))  # a link that stays inside the folder is fine
    assert BiLSTM.load(path, device="cpu").predict(["good"])[0].label in ("neg", "pos")


@needs_onnx
def test_external_data_missing_or_short_is_refused(
    split_model: tuple[Path, Path], tmp_path: Path, ort_opened: list[str]
) -> None:
    path, _ = split_model
    edit(path, set_location("absent.bin"))
    refused(path, "does not exist", "copy that file next to the model")
    edit(path, set_location("weights.bin"))
    (path.parent / "weights.bin").write_bytes(b"\x00" * 8)
    refused(path, "beyond the end of that file")

    def no_location(model: Any) -> None:
        tensor = model.graph.initializer[0]
        kept = [e for e in tensor.external_data if e.key != "location"]
        del tensor.external_data[:]
        tensor.external_data.extend(kept)

    edit(path, no_location)
    refused(path, "names no 'location'")
    assert ort_opened == []


@needs_onnx
def test_external_data_in_a_subgraph_tensor_is_checked(tmp_path: Path) -> None:
    """A Constant node's tensor attribute pointing outside the folder, inside an If branch."""
    tensor = numpy_helper.from_array(np.zeros((2,), np.float32), "c")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../secret"
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["r"], value=tensor)],
        "branch",
        [],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, [2])],
    )
    cond = helper.make_node("If", ["cond"], ["raw"], then_branch=branch, else_branch=branch)
    path = tiny_model(tmp_path / "model.onnx")
    edit(path, lambda m: m.graph.node.insert(0, cond))
    refused(path, "contains '..'", "'c'")


# -- operator domains ---------------------------------------------------------------------------


@needs_onnx
def test_unknown_custom_domain_is_refused(tmp_path: Path, ort_opened: list[str]) -> None:
    evil = helper.make_node("Backdoor", ["raw"], ["logits"], domain="evil.ops", name="post")
    path = tiny_model(tmp_path / "model.onnx", post=[evil], opsets=(("evil.ops", 1),))
    message = refused(path, "'Backdoor'", "'evil.ops'", "re-export")
    assert "node 'post'" in message
    assert ort_opened == []
    cli_refuses(path, tmp_path, "'Backdoor'", "'evil.ops'")


def _if_node(depth: int, leaf: Any) -> Any:
    """An If node whose then-branch nests `depth` graphs, the innermost holding `leaf`."""
    out = helper.make_tensor_value_info("r", TensorProto.FLOAT, None)
    plain = helper.make_graph(
        [helper.make_node("Constant", [], ["r"], value_float=0.0)], "plain", [], [out]
    )
    node = leaf
    for level in range(depth):
        branch = helper.make_graph([node], f"level{level}", [], [out])
        node = helper.make_node("If", ["cond"], ["r"], then_branch=branch, else_branch=plain)
    return node


@needs_onnx
def test_unknown_domain_in_a_nested_subgraph_is_refused(tmp_path: Path) -> None:
    leaf = helper.make_node("Spy", [], ["r"], domain="com.example")
    path = tiny_model(tmp_path / "model.onnx")
    edit(path, lambda m: m.graph.node.insert(0, _if_node(3, leaf)))
    refused(path, "'Spy'", "'com.example'")


def test_graphs_nested_too_deep_are_refused(tmp_path: Path) -> None:
    """Written by hand: the protobuf library itself refuses to build messages this deep."""
    node = _field(2, b"r") + _field(4, b"Constant")
    for _ in range(MAX_DEPTH + 2):
        graph = _field(1, node)  # GraphProto.node
        attribute = _field(1, b"then_branch") + b"\xa0\x01\x05" + _field(6, graph)  # type=GRAPH
        node = _field(1, b"cond") + _field(2, b"r") + _field(4, b"If") + _field(5, attribute)
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x08" + _field(7, _field(1, node)))  # ir_version 8, graph
    refused(path, f"nested more than {MAX_DEPTH} levels")


@needs_onnx
def test_local_function_domain_is_allowed_but_its_body_is_checked(tmp_path: Path) -> None:
    def function(body_domain: str) -> Any:
        return helper.make_function(
            "local.fn",
            "Twice",
            ["x"],
            ["y"],
            [helper.make_node("Add", ["x", "x"], ["y"], domain=body_domain)],
            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("evil.ops", 1)],
        )

    call = helper.make_node("Twice", ["raw"], ["logits"], domain="local.fn", name="post")
    opsets = (("local.fn", 1),)
    good = tiny_model(tmp_path / "good.onnx", post=[call], functions=(function(""),), opsets=opsets)
    summary = inspect_model(good)
    assert summary.functions == 1 and "local.fn" in summary.domains
    assert BiLSTM.load(good, device="cpu").predict(["good film"])[0].label in ("neg", "pos")
    bad = tiny_model(
        tmp_path / "bad.onnx", post=[call], functions=(function("evil.ops"),), opsets=opsets
    )
    refused(bad, "'Add'", "'evil.ops'")


@needs_onnx
def test_contrib_and_ml_domains_are_allowed(tmp_path: Path) -> None:
    post = [
        helper.make_node("Identity", ["raw"], ["mid"], domain="ai.onnx"),
        helper.make_node("Gelu", ["mid"], ["logits"], domain="com.microsoft"),
    ]
    path = tiny_model(tmp_path / "model.onnx", post=post, opsets=(("com.microsoft", 1),))
    assert inspect_model(path).domains == {"", "ai.onnx", "com.microsoft"}
    BiLSTM.load(path, device="cpu", threads=1)


# -- metadata -----------------------------------------------------------------------------------


def _tokenizer(**changes: Any) -> dict[str, Any]:
    tok: dict[str, Any] = dict(TokenizerConfig(max_length=8).to_dict())
    tok.update(changes)
    return tok


METADATA_CASES: dict[str, tuple[dict[str, Any] | str, tuple[str, ...]]] = {
    "not JSON": ('{"task": "classify",', ("'bilstm' is not valid JSON",)),
    "JSON list": ("[1, 2, 3]", ("must be a JSON object",)),
    "schema_version 99": (metadata_doc(schema_version=99), ("'schema_version' is 99", "upgrade")),
    "schema_version string": (metadata_doc(schema_version="1"), ("'schema_version'", "str")),
    "schema_version bool": (metadata_doc(schema_version=True), ("'schema_version'", "bool")),
    "no task": (
        {k: v for k, v in metadata_doc().items() if k != "task"},
        ("missing the key 'task'",),
    ),
    "unknown task": (metadata_doc(task="translate"), ("'task' is 'translate'",)),
    "labels not a list": (metadata_doc(labels="neg,pos"), ("'labels'", "list")),
    "labels not strings": (metadata_doc(labels=[0, 1]), ("'labels' must be a list of strings",)),
    "no labels": (metadata_doc(labels=[]), ("'labels' must not be empty",)),
    "three labels, two outputs": (
        metadata_doc(labels=["neg", "pos", "meh"]),
        ("'labels' has 3 entries but the model outputs 2",),
    ),
    "vocabulary without <pad>": (
        metadata_doc(vocabulary=VOCAB[1:]),
        ("'vocabulary' must start with '<pad>'",),
    ),
    "vocabulary not strings": (
        metadata_doc(vocabulary=[*VOCAB, 7]),
        ("'vocabulary' must be a list of strings",),
    ),
    "tokenizer missing": (metadata_doc(tokenizer=None), ("'tokenizer'",)),
    "tokenizer.max_length string": (
        metadata_doc(tokenizer=_tokenizer(max_length="8")),
        ("'tokenizer.max_length'",),
    ),
    "tokenizer.max_length zero": (
        metadata_doc(tokenizer=_tokenizer(max_length=0)),
        ("'tokenizer.max_length' must be >= 1",),
    ),
    "tokenizer.lowercase missing": (
        metadata_doc(tokenizer={"pattern": r"\w+", "max_length": 8}),
        ("'tokenizer.lowercase'",),
    ),
    "task_config not an object": (metadata_doc(task_config=[1]), ("'task_config'",)),
    "training not an object": (metadata_doc(training="yes"), ("'training'",)),
}


@needs_onnx
@pytest.mark.parametrize(("meta", "words"), list(METADATA_CASES.values()), ids=list(METADATA_CASES))
def test_bad_metadata_is_refused_with_the_key_named(
    meta: dict[str, Any] | str, words: tuple[str, ...], tmp_path: Path
) -> None:
    path = tiny_model(tmp_path / "model.onnx", meta)
    refused(path, *words, kind=MetadataError)
    cli_refuses(path, tmp_path, *words)


@needs_onnx
def test_missing_metadata_is_refused(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "model.onnx")
    edit(path, lambda m: m.ClearField("metadata_props"))
    refused(path, "has no bilstm metadata", kind=MetadataError)
    cli_refuses(path, tmp_path, "has no bilstm metadata")


@needs_onnx
def test_bad_metadata_on_a_real_exported_model(exported: Path, tmp_path: Path) -> None:
    """The same refusals on a model written by `bilstm export` (needs torch)."""
    original = onnx.load(str(exported))
    doc = json.loads(next(p.value for p in original.metadata_props if p.key == "bilstm"))
    cases = {
        "schema.onnx": ({**doc, "schema_version": 2}, "'schema_version' is 2"),
        "labels.onnx": ({**doc, "labels": ["neg"]}, "'labels' has 1 entries but the model"),
        "vocab.onnx": ({**doc, "vocabulary": doc["vocabulary"][1:]}, "'vocabulary' must start"),
    }
    for name, (bad, words) in cases.items():

        def change(model: Any, bad: dict[str, Any] = bad) -> None:
            helper.set_model_props(model, {"bilstm": json.dumps(bad)})

        path = edit(exported, change, tmp_path / name)
        refused(path, words, kind=MetadataError)
        cli_refuses(path, tmp_path, words)


HOSTILE_METADATA = {
    "deeply nested JSON": (
        "[" * 100_000,
        "metadata.py: json.loads raises RecursionError, not caught as MetadataError",
    ),
    "integer of 5000 digits": (
        '{"schema_version": ' + "1" * 5000 + "}",
        "metadata.py: json.loads raises ValueError (int max str digits), not MetadataError",
    ),
    "invalid tokenizer pattern": (
        metadata_doc(tokenizer=_tokenizer(pattern="(")),
        "metadata.py does not compile tokenizer.pattern; re.error escapes from BiLSTM()",
    ),
    "duplicate vocabulary entries": (
        metadata_doc(vocabulary=[*VOCAB, "good"]),
        "metadata.py does not check uniqueness; Vocabulary() raises ValueError",
    ),
    "duplicate labels": (
        metadata_doc(labels=["pos", "pos"]),
        "metadata.py accepts duplicate labels; probabilities silently lose a class",
    ),
}


@pytest.mark.parametrize(
    ("meta", "reason"), list(HOSTILE_METADATA.values()), ids=list(HOSTILE_METADATA)
)
@needs_onnx
def test_hostile_metadata_is_a_metadata_error(
    meta: dict[str, Any] | str, reason: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    path = tiny_model(tmp_path / "model.onnx", meta)
    refused(path, kind=MetadataError)


def fails_for_batches_over_one(path: Path) -> Path:
    """A model that loads, runs one row, and fails at run time on two (fixed Reshape)."""
    shape = numpy_helper.from_array(np.array([1, 2], np.int64))
    post = [
        helper.make_node("Constant", [], ["shape"], value=shape, name="shape"),
        helper.make_node("Reshape", ["raw", "shape"], ["logits"], name="post"),
    ]
    return tiny_model(path, metadata_doc(), post=post)


@needs_onnx
def test_model_failing_at_run_time_is_a_clear_error(tmp_path: Path) -> None:
    model = BiLSTM.load(fails_for_batches_over_one(tmp_path / "m.onnx"), device="cpu", threads=1)
    assert model.predict(["good"])[0].label is not None
    with pytest.raises(BiLSTMError, match="failed to run the model"):
        model.predict(["good", "bad"])


@needs_onnx
def test_vocabulary_longer_than_the_embedding_is_refused_at_load(tmp_path: Path) -> None:
    """CPU's Gather would fail on the extra id at run time; CUDA's would read past the table."""
    path = tiny_model(tmp_path / "model.onnx", metadata_doc(vocabulary=[*VOCAB, "extra"]))
    with pytest.raises(MetadataError, match=r"has 6 entries but the graph's table has 5 rows"):
        BiLSTM.load(path, device="cpu", threads=1)


@needs_onnx
def test_run_time_failure_through_cli_has_no_traceback(tmp_path: Path) -> None:
    path = fails_for_batches_over_one(tmp_path / "model.onnx")
    src = tmp_path / "in.txt"
    src.write_text("good\nbad\n", encoding="utf-8")
    result = runner.invoke(SINGLE, [str(path), str(src)])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)


@needs_onnx
def test_onnx_runtime_warnings_only_with_debug(tmp_path: Path) -> None:
    """ORT's own warnings (here: an unused initializer) stay off stderr unless --debug."""
    import subprocess
    import sys

    path = tiny_model(tmp_path / "model.onnx", metadata_doc())
    model = onnx.load(str(path))
    unused = numpy_helper.from_array(np.zeros(3, np.float32), "unused_weight")
    model.graph.initializer.append(unused)
    onnx.save(model, str(path))
    src = tmp_path / "in.txt"
    src.write_text("good\n", encoding="utf-8")
    script = "import sys; from bilstm.runtime.cli import run_main; run_main()"
    stderr = {}
    for flag in ([], ["--debug"]):
        run = subprocess.run(
            [sys.executable, "-c", script, str(path), str(src), "--quiet", *flag],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(run.stdout)["label"] in ("neg", "pos")
        stderr[bool(flag)] = run.stderr
    assert "unused_weight" in stderr[True]
    assert "unused_weight" not in stderr[False]
