"""`bilstm export` and `bilstm merge` never destroy what they did not create; exports say what
their parity check covered; standalone export of projected LSTMs.

One tiny random-weight checkpoint folder is shared by the module (no training).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from test_standalone import CORPUS, make_checkpoint  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bilstm.core.errors import InputError  # noqa: E402
from bilstm.export import export_checkpoint  # noqa: E402
from bilstm.export.cli import app as EXPORT  # noqa: E402
from bilstm.models.checkpoint import EXAMPLES, load_checkpoint, save_checkpoint  # noqa: E402
from bilstm.models.network import build_model  # noqa: E402
from bilstm.runtime import BiLSTM  # noqa: E402
from bilstm.runtime.cli import _make_apps  # noqa: E402

runner = CliRunner()
UMBRELLA, _ = _make_apps()


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder (with examples.json) as `bilstm train` writes it."""
    folder = tmp_path_factory.mktemp("safety") / "ckpt"
    save_checkpoint(make_checkpoint("classify", CORPUS), folder)
    return folder


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def export_cli(*args: str):  # type: ignore[no-untyped-def]
    """`bilstm export ARGS` (the umbrella's `main` hands `export` to this plugin app)."""
    return runner.invoke(EXPORT, [*args])


def assert_refused(result, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    for word in words:
        assert word.lower() in errors[0].lower(), result.output


@pytest.fixture()
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the exporter loads the checkpoint (refusals come before any work)."""
    monkeypatch.setattr("bilstm.export.exporter.load_checkpoint", _boom)


def _boom(*_: object, **__: object) -> None:
    raise AssertionError("the checkpoint was loaded before OUT was checked")


# -- item 1: bilstm export OUT checks ------------------------------------------------------------


def test_export_onto_the_checkpoint_folder_is_one_line_error(ckpt_dir: Path, no_work: None) -> None:
    before = _digest(ckpt_dir)
    assert_refused(export_cli(str(ckpt_dir), str(ckpt_dir)), "checkpoint folder", str(ckpt_dir))
    assert_refused(export_cli(str(ckpt_dir), str(ckpt_dir) + "/"), "checkpoint folder")
    assert _digest(ckpt_dir) == before


def test_export_inside_the_checkpoint_folder_is_refused(
    ckpt_dir: Path, tmp_path: Path, no_work: None
) -> None:
    before = _digest(ckpt_dir)
    for name in ("config.json", "weights.safetensors", "model.onnx"):
        result = export_cli(str(ckpt_dir), str(ckpt_dir / name))
        assert_refused(result, "inside the checkpoint folder", "write the model outside it")
    result = export_cli(str(ckpt_dir), str(ckpt_dir / "config.json"), "--force")
    assert_refused(result, "inside the checkpoint folder")  # --force does not make it right
    linked = tmp_path / "linked"
    linked.symlink_to(ckpt_dir)
    assert_refused(export_cli(str(ckpt_dir), str(linked / "m.onnx")), "inside the checkpoint")
    assert_refused(export_cli(str(ckpt_dir), str(linked)), "checkpoint folder")
    symlink = tmp_path / "sym.onnx"
    symlink.symlink_to(ckpt_dir / "config.json")
    assert_refused(export_cli(str(ckpt_dir), str(symlink)), "checkpoint")
    hardlink = tmp_path / "hard.onnx"
    os.link(ckpt_dir / "weights.safetensors", hardlink)
    assert_refused(export_cli(str(ckpt_dir), str(hardlink)), "is the input file")
    assert _digest(ckpt_dir) == before
    assert not (ckpt_dir / "model.onnx").exists()


def test_export_to_a_folder_or_a_missing_folder_is_refused_first(
    ckpt_dir: Path, tmp_path: Path, no_work: None
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    assert_refused(export_cli(str(ckpt_dir), str(folder)), "is a folder")
    assert list(folder.iterdir()) == []
    missing = tmp_path / "no" / "m.onnx"
    assert_refused(export_cli(str(ckpt_dir), str(missing)), "does not exist", "create it")


def test_existing_out_needs_force(ckpt_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"someone else's file")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("bilstm.export.exporter.load_checkpoint", _boom)  # refused before loading
        assert_refused(export_cli(str(ckpt_dir), str(out)), "already exists", "--force")
    assert out.read_bytes() == b"someone else's file"
    result = export_cli(str(ckpt_dir), str(out), "--force")
    assert result.exit_code == 0, result.output
    assert BiLSTM.load(out, device="cpu", threads=1).metadata.task == "classify"
    fresh = tmp_path / "fresh.onnx"
    assert export_cli(str(ckpt_dir), str(fresh), "--no-verify").exit_code == 0


def test_python_api_replaces_by_default_but_never_an_input(ckpt_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "api.onnx"
    out.write_bytes(b"old")
    report = export_checkpoint(ckpt_dir, out, verify=False)  # a named file may be replaced
    assert report.path == out and out.stat().st_size > 1000
    with pytest.raises(InputError, match="already exists"):
        export_checkpoint(ckpt_dir, out, verify=False, force=False)
    before = _digest(ckpt_dir)
    for bad, message in [
        (ckpt_dir, "checkpoint folder"),
        (ckpt_dir / "vocab.json", "inside the checkpoint folder"),
        (tmp_path, "is a folder"),
    ]:
        with pytest.raises(InputError, match=message):
            export_checkpoint(ckpt_dir, bad, verify=False)
    assert _digest(ckpt_dir) == before
    loaded = load_checkpoint(ckpt_dir)  # a loaded checkpoint has no folder to protect
    with pytest.raises(InputError, match="is a folder"):
        export_checkpoint(loaded, tmp_path, verify=False)


# -- item 1: bilstm merge OUT checks ------------------------------------------------------------


def _shard(path: Path, lines: list[int]) -> Path:
    path.write_text("".join(json.dumps({"line": n, "label": "pos"}) + "\n" for n in lines))
    return path


def test_merge_refuses_inputs_folders_and_existing_files(tmp_path: Path) -> None:
    a = _shard(tmp_path / "a.jsonl", [1, 3])
    b = _shard(tmp_path / "b.jsonl", [2])
    original = a.read_text() + b.read_text()

    def merge(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(UMBRELLA, ["merge", *args])

    hardlink = tmp_path / "hard.jsonl"
    os.link(a, hardlink)
    symlink = tmp_path / "sym.jsonl"
    symlink.symlink_to(b)
    for out in (a, hardlink, symlink):
        assert_refused(merge(str(out), str(a), str(b)), "is the input file")
    assert_refused(merge(str(a), str(a), str(b), "--force"), "is the input file")
    assert a.read_text() + b.read_text() == original and hardlink.read_text() == a.read_text()

    folder = tmp_path / "dir"
    folder.mkdir()
    assert_refused(merge(str(folder), str(a), str(b)), "is a folder")
    assert_refused(merge(str(tmp_path / "no" / "m.jsonl"), str(a), str(b)), "does not exist")

    out = tmp_path / "merged.jsonl"
    out.write_text("precious\n")
    assert_refused(merge(str(out), str(a), str(b)), "already exists", "--force")
    assert out.read_text() == "precious\n"
    result = merge(str(out), str(a), str(b), "--force")
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["line"] for x in out.read_text().splitlines()] == [1, 2, 3]

    result = merge("-", str(a), str(b))  # stdout as before
    assert result.exit_code == 0 and result.stdout.count("\n") == 3


# -- item 2: --with-tokenizer on a --proj-size model ---------------------------------------------


def test_standalone_export_of_a_projected_lstm(tmp_path: Path) -> None:
    ckpt = make_checkpoint("classify", CORPUS)
    cfg = dataclasses.replace(ckpt.model_config, proj_size=3)
    torch.manual_seed(4)
    ckpt.model = build_model(cfg)
    with torch.no_grad():
        for p in ckpt.model.parameters():
            p.uniform_(-0.8, 0.8)
    ckpt.model.eval()
    ckpt.model_config = cfg
    path, ids = tmp_path / "sa.onnx", tmp_path / "ids.onnx"
    report = export_checkpoint(ckpt, path, with_tokenizer=True)
    assert report.standalone is not None and "parity" in report.standalone
    export_checkpoint(ckpt, ids, verify=False)
    standalone = BiLSTM.load(path, device="cpu", threads=1)
    by_ids = BiLSTM.load(ids, device="cpu", threads=1)
    texts = ["A gorgeous, witty movie.", "", "Dull", "it's NOT bad; it’s GREAT!!!"]
    for batch in (texts, texts[:1], texts[2:3]):
        for got, want in zip(standalone.classify(batch), by_ids.classify(batch), strict=True):
            assert got.label == want.label
            if want.probabilities is None:  # a text without tokens
                assert got.probabilities is None
                continue
            assert got.probabilities is not None
            np.testing.assert_allclose(
                list(got.probabilities.values()), list(want.probabilities.values()), atol=1e-5
            )


# -- item 3: no dev examples is said, and recorded ----------------------------------------------


def test_missing_examples_is_warned_and_recorded(ckpt_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(ckpt_dir, bare)
    (bare / EXAMPLES).unlink()
    out = tmp_path / "bare.onnx"
    result = export_cli(str(bare), str(out))
    assert result.exit_code == 0, result.output
    warnings = [x for x in result.output.splitlines() if x.startswith("warning: ")]
    assert len(warnings) == 1 and "examples.json" in warnings[0], result.output
    assert "random batches only" in warnings[0]
    info = runner.invoke(UMBRELLA, ["info", str(out), "--json"])
    assert info.exit_code == 0, info.output
    parity = json.loads(info.stdout)["export"]["parity"]
    assert parity["dev_examples"] == 0 and "examples.json" in parity["note"]

    with pytest.warns(UserWarning, match="random batches only"):
        export_checkpoint(bare, tmp_path / "api.onnx")

    full = tmp_path / "full.onnx"
    result = export_cli(str(ckpt_dir), str(full))
    assert result.exit_code == 0 and "warning:" not in result.output, result.output
    parity = BiLSTM.load(full, device="cpu", threads=1).metadata.export["parity"]
    assert parity["dev_examples"] > 0 and "note" not in parity


# -- found on the way: a standalone model fed only texts without tokens --------------------------

_RUN_EMPTY = """
import json, sys
import numpy as np, onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
for texts in ([""], ["", " ", "\\t"]):
    out = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {"text": np.array(texts, dtype=object)})))
    print(json.dumps({"num_tokens": out["num_tokens"].tolist(),
                      "probabilities": float(np.abs(out["probabilities"]).sum())}))
"""


@pytest.mark.parametrize("task", ["classify", "tag", "cloze"])
def test_standalone_graph_runs_a_batch_without_any_token(task: str, tmp_path: Path) -> None:
    """Other languages call the graph directly: [""] must give zeros, not a Scan failure or
    a crashed process (ONNX Runtime died with SIGFPE on a 0-wide character axis)."""
    import subprocess
    import sys

    texts = [*CORPUS, "the ___ sat", "a ___ ran"] if task == "cloze" else CORPUS
    path = tmp_path / f"{task}.onnx"
    export_checkpoint(make_checkpoint(task, texts), path, with_tokenizer=True, verify=False)
    run = subprocess.run(
        [sys.executable, "-c", _RUN_EMPTY, str(path)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert rows == [
        {"num_tokens": [0], "probabilities": 0.0},
        {"num_tokens": [0, 0, 0], "probabilities": 0.0},
    ]


# -- the one parity checker: tolerance rules, masking, the three stored forms ----------------


def test_parity_compare_rules_nan_and_padding() -> None:
    """fp32: relative rule on every output; variant: absolute on probabilities only; a NaN
    always fails and shows as inf; padded positions of per-token outputs never count."""
    from bilstm.export.parity import Case, Tolerance, compare

    ref = {"logits": np.array([[1000.0, 0.0]]), "probabilities": np.array([[1.0, 0.0]])}
    got = {"logits": np.array([[1000.005, 0.0]]), "probabilities": np.array([[0.95, 0.05]])}
    case = Case("c", {"lengths": np.array([1])})
    fp32 = compare(case, "classify", ref, got, ["logits"], Tolerance(1e-5, relative=True))
    assert fp32[0].within and fp32[0].max_abs == pytest.approx(0.005)  # 1e-5 * (1 + 1000)
    variant = Tolerance(0.1, outputs=("probabilities",), name="int8")
    rows = compare(case, "classify", ref, got, ["logits", "probabilities"], variant)
    assert [r.within for r in rows] == [True, True]
    got["probabilities"] = np.array([[np.nan, 0.0]])
    (row,) = compare(case, "classify", ref, got, ["probabilities"], variant)
    assert not row.within and row.max_abs == np.inf
    # Tagging: [batch, time, classes] padded to different widths on the two sides.
    tag_case = Case("t", {"lengths": np.array([1, 2])})
    want = {"probabilities": np.zeros((2, 2, 3))}
    have = {"probabilities": np.full((2, 4, 3), 9.0)}
    have["probabilities"][:, :2] = 0.0
    have["probabilities"][0, 1] = 9.0  # padding of row 0
    (tag,) = compare(tag_case, "tag", want, have, ["probabilities"], Tolerance(1e-5))
    assert tag.within and tag.shape == [3, 3] and tag.output_shape == [2, 2, 3]


def test_parity_report_forms_and_message() -> None:
    """`to_dict` writes the stored keys of each form; failures name case, output and bound."""
    from bilstm.core.errors import ParityError
    from bilstm.export.parity import Case, ParityReport, Tolerance, compare

    ref = {"logits": np.array([[2.0, 0.0]]), "probabilities": np.array([[0.9, 0.1]])}
    got = {"logits": np.array([[0.0, 2.0]]), "probabilities": np.array([[0.1, 0.9]])}
    rule = Tolerance(0.1, outputs=("probabilities",), name="int8")
    rows = compare(Case("dev", {}, dev=True), "classify", ref, got, list(ref), rule)
    report = ParityReport(rule=rule, cases=rows, form="variant", provider="CPU", note="n")
    doc = report.to_dict()
    assert list(doc) == [
        "tolerance",
        "checked_output",
        "provider",
        "cases",
        "max_abs",
        "logits_max_abs",
        "argmax_agreement",
        "examples_argmax_agreement",
        "examples",
        "fp32_dev_metrics",
        "note",
    ]
    assert doc["max_abs"] == pytest.approx(0.8) and doc["logits_max_abs"] == 2.0
    assert doc["argmax_agreement"] == 0.0 and doc["examples"] == 1
    assert list(doc["cases"][0]) == ["case", "output", "shape", "max_abs", "mean_abs"]
    with pytest.raises(ParityError, match=r"int8 model differs .* the int8 tolerance 0\.1 on "):
        report.raise_if_failed("int8 model")
    skipped = ParityReport(rule=rule, form="variant", skipped="why", note="n").to_dict()
    assert skipped == {"tolerance": 0.1, "skipped": "why", "note": "n"}
    fp32 = ParityReport(rule=Tolerance(1e-5, relative=True), cases=rows).to_dict()
    assert list(fp32) == ["tolerance", "max_abs", "dev_examples", "cases"]
    assert list(fp32["cases"][0]) == ["case", "shape", "max_abs", "max_rel", "within", "output"]
    for row in rows:
        row.reference = "id_graph"
    texts = ParityReport(rule=Tolerance(1e-5), cases=rows, form="standalone").to_dict()
    assert "logits_max_abs_vs_id_graph" in texts and texts["token_ids"].startswith("identical")
