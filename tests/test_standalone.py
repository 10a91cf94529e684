"""Standalone models (`bilstm export --with-tokenizer`): raw text in, labels out.

Token ids must be bit-identical to the Python tokenizer's on a corpus made here (non-ASCII,
casing, punctuation, contractions, empty strings, random Unicode) and on the shipped examples;
classify, tag and cloze must answer as the id-based model does, through the graph's own outputs
and through the Python runtime and `bilstm-run`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from helpers.checkpoints import random_checkpoint  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bilstm.core.errors import DeviceError, ExportError, InputError  # noqa: E402
from bilstm.core.preprocess import BLANK, MASK, TextEncoder  # noqa: E402
from bilstm.core.tokenizer import (  # noqa: E402
    DEFAULT_PATTERN,
    WHITESPACE_PATTERN,
    TokenizerConfig,
)
from bilstm.export import export_checkpoint  # noqa: E402
from bilstm.export import standalone as sa  # noqa: E402
from bilstm.models.checkpoint import Checkpoint  # noqa: E402
from bilstm.models.config import ModelConfig  # noqa: E402
from bilstm.runtime import BiLSTM  # noqa: E402
from bilstm.runtime.metadata import METADATA_KEY, ModelMetadata  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CORPUS = [
    "",
    " ",
    "\t \n ",
    "A gorgeous, witty movie.",
    "It's NOT bad; it’s GREAT!!! Don't, won't, y'all, rock'n'roll, 'quoted', o'",
    "Café DÉJÀ-VU naïve FAÇADE Straße STRASSE ẞ ǅemal ǄEMAL ﬁne",
    "İstanbul İZMİR ΟΔΟΣ ὈΔΥΣΣΕΎΣ Σ ΣΑ ΑΣ. ΑΣ' Σ̈Α ΜΙΚΡΟΣ Μικρός",
    "Москва МОСКВА — 東京タワー 북한 ١٢٣ 𝐀𝐁𝐂 x² ⅷ Ⅻ",
    "emoji 😀😀 👍🏽 🇫🇷 ok👌 a\u200db \u00a0nbsp\u2009thin\u3000ideo",
    "snake_case __init__ ___ a___b ____ e\u0301 \u0301x 3.14 $5 #tag @user",
    "tab\tsep\x0bvt\x1cfs\x85nel\u2028ls NUL\x00in",
    "word " * 40,
]


def _random_texts(n: int, seed: int) -> list[str]:
    """Random code points from all of Unicode, case-mapped letters and Greek, with spaces."""
    rng = random.Random(seed)
    keys, _ = sa.lowercase_table()
    greek = [chr(c) for c in range(0x370, 0x400)] + ["Σ"] * 20
    pools = [
        [chr(c) for c in rng.sample(range(0x20, 0x110000), 4000) if not 0xD800 <= c < 0xE000],
        keys,
        greek,
        [chr(c) for c in range(0x20, 0x250)],
    ]
    texts = []
    for _ in range(n):
        pool = rng.choice(pools)
        texts.append(
            "".join(
                rng.choice(pool) if rng.random() > 0.15 else rng.choice(" \t'’.-")
                for _ in range(rng.randint(0, 40))
            )
        )
    return texts


TEXTS = CORPUS + _random_texts(300, seed=5)


def make_checkpoint(
    task: str,
    texts: list[str],
    lowercase: bool = True,
    extra_words: tuple[str, ...] = (),
    seed: int = 0,
) -> Checkpoint:
    """A tiny random-weight model whose vocabulary is most of the tokens of `texts`
    (test_export_safety and test_node_example use it too)."""
    return random_checkpoint(
        task,
        texts=texts,
        lowercase=lowercase,
        extra_words=extra_words,
        seed=seed,
        scale=0.8,
        hidden_size=5,
        char_dim=3,
        char_filters=4,
        max_word_length=5,
    )


@pytest.fixture(scope="module")
def classify_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Checkpoint, Path, Path]:
    ckpt = make_checkpoint("classify", TEXTS)
    folder = tmp_path_factory.mktemp("standalone")
    report = export_checkpoint(ckpt, folder / "sa.onnx", with_tokenizer=True)
    assert report.standalone is not None and report.standalone["parity"]["tokens"] > 100
    export_checkpoint(ckpt, folder / "ids.onnx")
    return ckpt, folder / "sa.onnx", folder / "ids.onnx"


def _encoder(path: Path) -> tuple[TextEncoder, ModelMetadata]:
    model = onnx.load(str(path))
    meta = ModelMetadata.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert meta.tokenizer is not None
    return TextEncoder.create(meta.tokenizer, meta.vocabulary, meta.task_config), meta


def _parity(path: Path, texts: list[str]) -> dict[str, object]:
    enc, meta = _encoder(path)
    runner = sa.StandaloneRunner(onnx.load(str(path)))
    return sa.compare_preprocessing(runner, enc, meta.task, texts, batch_size=64)


def test_token_ids_identical_on_corpus(classify_model) -> None:  # type: ignore[no-untyped-def]
    _, path, _ = classify_model
    stats = _parity(path, TEXTS)
    assert stats["mismatched_texts"] == 0, stats["examples"]
    assert stats["texts"] == len(TEXTS) and stats["tokens"] > 2000


def test_token_ids_identical_on_shipped_examples(classify_model) -> None:  # type: ignore[no-untyped-def]
    _, path, _ = classify_model
    texts = [
        line for f in sorted(EXAMPLES.glob("*.txt")) for line in f.read_text("utf-8").splitlines()
    ]
    assert len(texts) > 10
    stats = _parity(path, texts)
    assert stats["mismatched_texts"] == 0, stats["examples"]


def test_final_sigma_rule_where_the_vocabulary_has_sigmas(tmp_path: Path) -> None:
    """Greek in the vocabulary: "ΟΔΟΣ" must become "οδος" exactly as `str.lower` writes it."""
    texts = [t for t in TEXTS if any("\u0370" <= c <= "\u03ff" for c in t)] + CORPUS
    ckpt = make_checkpoint("classify", texts, extra_words=("οδος", "ας", "σ"))
    assert sa.needs_final_sigma(ckpt.vocabulary.tokens)  # type: ignore[union-attr]
    path = tmp_path / "greek.onnx"
    export_checkpoint(ckpt, path, with_tokenizer=True)
    runner = sa.StandaloneRunner(onnx.load(str(path)))
    assert runner.final_sigma
    got = runner(["ΟΔΟΣ ΑΣ' ΣΑ Σ ΑΣ̈ ΌΣΟΣ"])
    assert [str(k) for k in got[sa.TOKEN_KEYS][0]] == [
        "οδος",
        "ας",
        "'",
        "σα",
        "σ",
        "ας",
        "̈",
        "όσος",
    ]
    stats = _parity(path, texts)
    assert stats["mismatched_texts"] == 0, stats["examples"]


def test_classify_end_to_end(classify_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ckpt, path, ids_path = classify_model
    texts = ["A gorgeous, witty movie.", "", "ΟΔΟΣ İstanbul 😀", "Don't!"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("text", "tensor(string)")]
    out = dict(
        zip(
            [o.name for o in session.get_outputs()],
            session.run(None, {"text": np.array(texts, dtype=object)}),
            strict=True,
        )
    )
    assert out["classes"].tolist() == ckpt.labels
    assert out["num_tokens"].tolist() == [6, 0, 3, 2]
    assert out["label"][1] == "" and not out["probabilities"][1].any()
    reference = BiLSTM.load(ids_path, device="cpu", threads=1).classify(texts)
    standalone = BiLSTM.load(path, device="cpu", threads=1)
    assert standalone.metadata.standalone
    mine = standalone.classify(texts)
    for i, (ref, got) in enumerate(zip(reference, mine, strict=True)):
        assert got.label == ref.label and got.num_tokens == ref.num_tokens
        if ref.probabilities is None:
            assert got.probabilities is None
            continue
        assert out["label"][i] == ref.label
        assert got.probabilities is not None
        for label, p in ref.probabilities.items():
            assert abs(got.probabilities[label] - p) <= 1e-6
            assert abs(out["probabilities"][i][ckpt.labels.index(label)] - p) <= 1e-6
    standalone.warmup()

    from bilstm.runtime.cli import _make_apps

    _, single = _make_apps()
    data = tmp_path / "in.txt"
    data.write_text("\n".join([*texts, "Ünïcödé, CASING; punctuation..."]) + "\n", "utf-8")
    records = []
    for model in (ids_path, path):
        # the same device for both: records are compared to the last digit
        args = [str(model), str(data), "--quiet", "--device", "cpu"]
        result = CliRunner().invoke(single, args)
        assert result.exit_code == 0, result.output
        records.append([json.loads(line) for line in result.stdout.splitlines()])
    assert records[0] == records[1]


@pytest.mark.cuda
@pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="needs onnxruntime-gpu and a CUDA GPU",
)
def test_text_in_models_run_on_cpu_under_auto_and_refuse_cuda(classify_model) -> None:  # type: ignore[no-untyped-def]
    """ORT cannot copy string tensors to the GPU: auto falls back to CPU, cuda says why."""
    _, path, _ = classify_model
    model = BiLSTM.load(path, device="auto")
    assert model.providers == ["CPUExecutionProvider"]
    assert model.classify(["A gorgeous, witty movie."])[0].label in model.labels
    with pytest.raises(DeviceError, match="with-tokenizer"):
        BiLSTM.load(path, device="cuda")


def test_tag_end_to_end(tmp_path: Path) -> None:
    sentences = [
        "The cat sat on the mat .",
        "Él dijo : « ¡ Hola ! »",
        "NEW   York's   E-mail 3.14",
        "",
        "ΟΔΟΣ ünïcödé 😀 snake_case",
        *CORPUS,
    ]
    ckpt = make_checkpoint("tag", sentences)
    path, ids_path = tmp_path / "tag.onnx", tmp_path / "ids.onnx"
    export_checkpoint(ckpt, path, with_tokenizer=True)
    export_checkpoint(ckpt, ids_path)
    stats = _parity(path, sentences + TEXTS)
    assert stats["mismatched_texts"] == 0, stats["examples"]
    runner = sa.StandaloneRunner(onnx.load(str(path)))
    out = runner(sentences[:4])
    reference = BiLSTM.load(ids_path, device="cpu", threads=1).tag(sentences[:4])
    for i, ref in enumerate(reference):
        n = len(ref.tokens)
        assert out["tokens"][i][:n].tolist() == ref.tokens
        assert out["tags"][i][:n].tolist() == ref.tags
        assert not any(out["tags"][i][n:]) and not any(out["tokens"][i][n:])
        assert np.allclose(out["confidences"][i][:n], ref.confidences, atol=1e-6)
    mine = BiLSTM.load(path, device="cpu", threads=1).tag([*sentences[:4], ["pre", "split"]])
    assert [m.tags for m in mine[:4]] == [r.tags for r in reference]
    assert len(mine[4].tags) == 2


def test_cloze_end_to_end(tmp_path: Path) -> None:
    texts = [t for t in CORPUS if t.strip()] + ["the movie was great", "a dull , boring movie"]
    ckpt = make_checkpoint("cloze", texts)
    path, ids_path = tmp_path / "cloze.onnx", tmp_path / "ids.onnx"
    export_checkpoint(ckpt, path, with_tokenizer=True)
    export_checkpoint(ckpt, ids_path)
    queries = ["the ___ was great", "A ___, really!", "no blank here", "two ___ ___", "", "___"]
    stats = _parity(path, queries + TEXTS)
    assert stats["mismatched_texts"] == 0, stats["examples"]
    out = sa.StandaloneRunner(onnx.load(str(path)))(queries)
    assert out["num_blanks"].tolist() == [1, 1, 0, 2, 0, 1]
    reference = BiLSTM.load(ids_path, device="cpu", threads=1)
    valid = [0, 1, 5]
    expected = reference.fill([queries[i] for i in valid], top_k=sa.DEFAULT_TOP_K)
    for i, ref in zip(valid, expected, strict=True):
        assert out["words"][i].tolist() == [w for w, _ in ref.candidates]
        assert np.allclose(out["word_probabilities"][i], [p for _, p in ref.candidates], atol=1e-6)
        assert MASK not in out["words"][i].tolist()
    for i in (2, 3, 4):
        assert not any(out["words"][i]) and not out["word_probabilities"][i].any()
    mine = BiLSTM.load(path, device="cpu", threads=1).fill([queries[i] for i in valid])
    assert [m.candidates[0][0] for m in mine] == [r.candidates[0][0] for r in expected]
    assert BLANK == "___"


def test_pattern_translation_reads_like_python() -> None:
    assert DEFAULT_PATTERN in sa._PROVEN_PATTERNS and WHITESPACE_PATTERN in sa._PROVEN_PATTERNS
    re2 = sa.re2_pattern(DEFAULT_PATTERN)
    assert "\\w" not in re2 and "\\s" not in re2
    assert "\\x{C0}-\\x{D6}" in re2  # À..Ö are word characters for Python, not for RE2's \w
    assert sa.re2_pattern(WHITESPACE_PATTERN).startswith("(?:[")
    keys, values = sa.lowercase_table()
    assert dict(zip(keys, values, strict=True))["İ"] == "i̇" and "a" not in keys


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pattern": r"\w+"}, "tokenizer.pattern"),
        ({"pattern": r"(\w+)|\S"}, "tokenizer.pattern"),
        ({"opset": 17}, "--opset 20"),
    ],
)
def test_refusals_name_the_option(change: dict[str, object], message: str, tmp_path: Path) -> None:
    ckpt = make_checkpoint("classify", CORPUS)
    opset = change.pop("opset", None)
    if change:
        assert ckpt.tokenizer is not None
        ckpt.tokenizer = TokenizerConfig(**{**ckpt.tokenizer.to_dict(), **change})
    with pytest.raises(ExportError, match=message):
        export_checkpoint(ckpt, tmp_path / "x.onnx", with_tokenizer=True, opset=opset)  # type: ignore[arg-type]
    assert not (tmp_path / "x.onnx").exists()


def test_forecast_is_refused(tmp_path: Path) -> None:
    ckpt = make_checkpoint("classify", CORPUS)
    ckpt.model_config = ModelConfig(vocab_size=0, num_labels=1, task="forecast", num_features=1)
    with pytest.raises(ExportError, match="text models"):
        export_checkpoint(ckpt, tmp_path / "x.onnx", with_tokenizer=True)


def test_int8_variant_and_runtime_guards(classify_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ckpt, _, _ = classify_model
    path = tmp_path / "int8.onnx"
    report = export_checkpoint(ckpt, path, with_tokenizer=True, quantize="int8")
    assert report.precision == "int8" and report.standalone is not None
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"DynamicQuantizeLSTM", "Tokenizer", "LabelEncoder"} <= ops
    model = BiLSTM.load(path, device="cpu", threads=1)
    assert model.classify(["Great fun!"])[0].label in ckpt.labels
    with pytest.raises(InputError):
        model.predict_arrays(np.ones((1, 2), np.int64), np.array([2]))
    tagger = make_checkpoint("tag", CORPUS)
    export_checkpoint(tagger, tmp_path / "tag.onnx", with_tokenizer=True, verify=False)
    with pytest.raises(InputError, match="cannot take the tokens"):
        BiLSTM.load(tmp_path / "tag.onnx", device="cpu").tag([["two words"]])


def test_text_in_models_never_reach_cuda(  # type: ignore[no-untyped-def]
    classify_model, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The guard sees the string input, so no CUDA session is attempted (here CUDA is faked)."""
    from bilstm.runtime import session as sessions
    from bilstm.runtime.model_guard import inspect_model

    _, path, ids_path = classify_model
    assert inspect_model(path).string_inputs and not inspect_model(ids_path).string_inputs
    cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(sessions.ort, "get_available_providers", lambda: cuda)
    with caplog.at_level("WARNING", logger="bilstm"):
        model = BiLSTM.load(path, device="auto")
    assert model.providers == ["CPUExecutionProvider"]
    assert "with-tokenizer" in caplog.text and "running on CPU" in caplog.text
    with pytest.raises(DeviceError, match="with-tokenizer"):
        BiLSTM.load(path, device="cuda")
