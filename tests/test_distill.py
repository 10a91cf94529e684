"""Knowledge distillation (`--teacher`) and warm start from a cloze model (`--init-from`).

Tiny data and models (conftest's `trained` classifier is the teacher); `bilstm train` runs in
this process (helpers.cli).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from helpers.checkpoints import random_checkpoint
from helpers.cli import Run, bilstm

torch = pytest.importorskip("torch")

from bilstm.core.datasets import LabelledText, read_classification  # noqa: E402
from bilstm.core.errors import BiLSTMError, CheckpointError, DataError, InputError  # noqa: E402
from bilstm.core.tokenizer import TokenizerConfig  # noqa: E402
from bilstm.models.checkpoint import load_checkpoint, predict_logits  # noqa: E402
from bilstm.models.classify import (  # noqa: E402
    ClassifyTrainer,
    Distillation,
    SoftTargets,
    teacher_logits,
)
from bilstm.models.config import TrainConfig  # noqa: E402

TINY = ["--epochs", "2", "--hidden-size", "4", "--embedding-dim", "4", "--batch-size", "16"]


def train(*args: object) -> Run:
    return bilstm("train", "classify", *args)


def test_soft_target_loss_is_hintons() -> None:
    """(1 - a) * CE + a * T^2 * KL(softmax(t/T) || softmax(s/T)), computed by hand."""
    teacher = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    student = torch.tensor([[0.3, 0.2, -0.1], [1.0, -1.0, 0.0]])
    hard = torch.tensor(0.7)
    t, a = 3.0, 0.25
    soft = SoftTargets(teacher, temperature=t, weight=a)
    expected_kl = 0.0
    for row_t, row_s in zip(teacher.tolist(), student.tolist(), strict=True):
        p = [math.exp(x / t) for x in row_t]
        q = [math.exp(x / t) for x in row_s]
        p = [x / sum(p) for x in p]
        q = [x / sum(q) for x in q]
        expected_kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    expected = (1 - a) * 0.7 + a * t * t * expected_kl / 2
    assert soft.mix(hard, student, [0, 1]).item() == pytest.approx(expected, rel=1e-5)
    # a student that matches its teacher pays only the hard part; weight 0 is plain CE
    assert soft.mix(hard, teacher, [0, 1]).item() == pytest.approx((1 - a) * 0.7, abs=1e-6)
    assert SoftTargets(teacher, t, 0.0).mix(hard, student, [0, 1]).item() == pytest.approx(0.7)
    # rows are looked up by the batch's item indexes
    swapped = soft.mix(hard, student.flip(0), [1, 0]).item()
    assert swapped == pytest.approx(expected, rel=1e-5)


def test_one_teacher_loss_is_unchanged_bit_for_bit() -> None:
    """A single teacher gives exactly the loss of the one-teacher formula (no averaging)."""
    torch.manual_seed(0)
    teacher, student = torch.randn(10, 3) * 3, torch.randn(4, 3)
    batch, hard, t, a = [7, 2, 9, 0], torch.tensor(0.4), 4.0, 0.7
    p = torch.softmax(teacher[batch] / t, dim=-1)
    kl = torch.nn.functional.kl_div(
        torch.log_softmax(student / t, dim=-1), p, reduction="batchmean"
    )
    want = (1 - a) * hard + a * t * t * kl
    for logits in (teacher, teacher.unsqueeze(0)):  # [texts, labels] or [1, texts, labels]
        soft = SoftTargets(logits, t, a)
        assert torch.equal(soft.targets(batch, student.device), p)
        assert torch.equal(soft.mix(hard, student, batch), want)


def test_several_teachers_average_their_softened_probabilities() -> None:
    """The soft target is the mean of the teachers' temperature-T probabilities, by hand."""
    first = torch.tensor([[4.0, 0.0], [0.0, 1.0]])
    second = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    t = 2.0
    soft = SoftTargets(torch.stack([first, second]), temperature=t, weight=1.0)

    def probs(row: list[float]) -> list[float]:
        e = [math.exp(x / t) for x in row]
        return [x / sum(e) for x in e]

    want = [
        [(x + y) / 2 for x, y in zip(probs(r1), probs(r2), strict=True)]
        for r1, r2 in zip(first.tolist(), second.tolist(), strict=True)
    ]
    got = soft.targets([0, 1], torch.device("cpu"))
    assert torch.allclose(got, torch.tensor(want), atol=1e-6)
    # not the softmax of the mean logits (that would be a geometric mean of probabilities)
    geometric = torch.softmax((first + second) / 2 / t, dim=-1)
    assert not torch.allclose(got, geometric, atol=1e-3)
    # a student equal to the average pays nothing; KL is taken against the average
    student = got.log() * t  # softmax(student / t) == got
    assert soft.mix(torch.tensor(0.0), student, [0, 1]).item() == pytest.approx(0.0, abs=1e-6)
    only_first = SoftTargets(first, t, 1.0).mix(torch.tensor(0.0), student, [0, 1]).item()
    assert only_first > 0.01


def test_teacher_logits_of_several_teachers(trained, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Each teacher reads the texts with its own vocabulary; rows stack in --teacher order."""
    out, ckpt = trained
    texts = [it.text for it in read_classification(data_dir / "train.tsv")][:20]
    other = tmp_path / "other"
    random_checkpoint("classify", texts=texts, save_to=other, labels=list(reversed(ckpt.labels)))
    both = teacher_logits(Distillation((out, other)), ckpt.labels, texts, batch_size=8)
    assert both.shape == (2, 20, len(ckpt.labels))
    alone = [teacher_logits(Distillation(p), ckpt.labels, texts, batch_size=8)[0]
             for p in (out, other)]  # fmt: skip
    assert torch.equal(both[0], alone[0]) and torch.equal(both[1], alone[1])
    # every teacher is checked before any runs, and the error names the one at fault
    tagger = tmp_path / "tagger"
    random_checkpoint("tag", save_to=tagger)
    with pytest.raises(CheckpointError, match=rf"--teacher {tagger}: is a tag checkpoint"):
        teacher_logits(Distillation((out, tagger)), ckpt.labels, texts, batch_size=8)
    odd = tmp_path / "odd"
    random_checkpoint("classify", save_to=odd, labels=["bad", "good"])
    with pytest.raises(DataError, match=rf"--teacher {odd}: the teacher's labels"):
        teacher_logits(Distillation((out, other, odd)), ckpt.labels, texts, batch_size=8)
    with pytest.raises(InputError, match="at least one teacher"):
        Distillation(())


def test_teacher_logits_are_the_eval_mode_outputs(trained, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    out, ckpt = trained
    texts = [it.text for it in read_classification(data_dir / "train.tsv")][:50]
    distill = Distillation(out, temperature=2.0, weight=0.5)
    stacked = teacher_logits(distill, ckpt.labels, texts, batch_size=7)
    assert stacked.shape == (1, 50, len(ckpt.labels))  # [teachers, texts, labels]
    got = stacked[0]
    assert not got.requires_grad
    teacher = load_checkpoint(out)
    assert teacher.tokenizer is not None and teacher.vocabulary is not None
    from bilstm.core.tokenizer import Tokenizer

    tok = Tokenizer(teacher.tokenizer)
    for i in (0, 13, 49):
        ids = teacher.vocabulary.encode(tok.tokenize(texts[i]))
        want = predict_logits(teacher.model, [ids], [len(ids)])[0]
        assert torch.allclose(got[i], want, atol=1e-5)
    # dropout is off: the same texts give the same targets again (batching only pads)
    again = teacher_logits(distill, ckpt.labels, texts, batch_size=50)[0]
    assert torch.allclose(got, again, atol=1e-5)
    # the student's label order may differ from the teacher's: columns follow the student
    flipped = teacher_logits(distill, list(reversed(ckpt.labels)), texts, batch_size=7)[0]
    assert torch.equal(flipped, got.flip(1))


def test_distillation_teaches_what_the_labels_do_not(
    trained,  # type: ignore[no-untyped-def]
    data_dir: Path,
    tmp_path: Path,
) -> None:
    """With every training label flipped, a student that learns only from the teacher
    (--distill-weight 1) still classifies dev right, and records its teacher; one that learns
    only the labels gets dev wrong."""
    teacher, _ = trained
    rows = (data_dir / "train.tsv").read_text().splitlines()
    swap = {"pos": "neg", "neg": "pos"}
    flipped = [rows[0]] + [swap[r.split("\t")[0]] + "\t" + r.split("\t", 1)[1] for r in rows[1:]]
    (tmp_path / "flipped.tsv").write_text("\n".join(flipped) + "\n")
    common = ["--data", tmp_path / "flipped.tsv", "--dev", data_dir / "dev.tsv"]
    common += ["--epochs", "8", "--patience", "8", "--lr", "0.02", "--batch-size", "16"]
    common += ["--hidden-size", "6", "--embedding-dim", "8", "--dropout", "0"]
    run = train(*common, "--out", tmp_path / "student", "--teacher", teacher,
                "--distill-weight", "1", "--distill-temperature", "2")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    summary = json.loads((tmp_path / "student" / "summary.json").read_text())
    assert summary["dev_metrics"]["accuracy"] >= 0.9
    assert summary["data"]["teacher"] == {
        "checkpoint": teacher.name,
        "temperature": 2.0,
        "weight": 1.0,
    }
    plain = train(*common, "--out", tmp_path / "plain")
    assert plain.exit_code == 0, plain.stderr
    plain_summary = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert plain_summary["dev_metrics"]["accuracy"] <= 0.6
    assert "teacher" not in plain_summary["data"]


def test_teacher_errors(trained, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    teacher, _ = trained
    data = ["--data", data_dir / "train.tsv", "--dev", data_dir / "dev.tsv", *TINY]
    # distillation settings without a teacher
    run = train(*data, "--out", tmp_path / "a", "--distill-weight", "0.3")
    assert run.exit_code == 2 and "--distill-weight" in run.stderr and "--teacher" in run.stderr
    # a teacher for another task's training
    run = bilstm("train", "cloze", "--data", data_dir / "train.tsv", "--dev",
                 data_dir / "dev.tsv", "--out", tmp_path / "b", "--teacher", teacher)  # fmt: skip
    assert run.exit_code == 2 and "--teacher applies to classify" in run.stderr
    # a teacher that is not a classifier
    tagger = tmp_path / "tagger"
    random_checkpoint("tag", save_to=tagger)
    run = train(*data, "--out", tmp_path / "c", "--teacher", tagger)
    assert run.exit_code == 2 and "is a tag checkpoint" in run.stderr
    assert not (tmp_path / "c").exists()
    # a teacher with other labels
    other = tmp_path / "other"
    random_checkpoint("classify", save_to=other, labels=["bad", "good"])
    run = train(*data, "--out", tmp_path / "d", "--teacher", other)
    assert run.exit_code == 2
    assert "teacher's labels ['bad', 'good'] differ" in run.stderr
    # the student would overwrite its teacher
    run = train(*data, "--out", teacher, "--force", "--teacher", teacher)
    assert run.exit_code == 2 and "cannot overwrite its own teacher" in run.stderr
    assert load_checkpoint(teacher).summary["dev_metrics"]  # untouched


CLOZE_TEXTS = ["the movie was good", "a bad plot and a dull cast", "the story was very fun"]


def _build(items: list[LabelledText], init_from: Path, **model: int) -> ClassifyTrainer:
    cfg = {"embedding_dim": 6, "hidden_size": 8, "num_layers": 1, **model}
    return ClassifyTrainer(items, items, cfg, TokenizerConfig(), init_from=init_from)


def test_init_from_copies_the_cloze_layers_and_shared_words(tmp_path: Path) -> None:
    from rich.console import Console

    cloze_dir = tmp_path / "cloze"
    cloze = random_checkpoint("cloze", texts=CLOZE_TEXTS, save_to=cloze_dir)
    assert cloze.vocabulary is not None
    items = [LabelledText("the movie was superb", "pos", 1), LabelledText("dull", "neg", 2)]
    console = Console(stderr=True, record=True)
    torch.manual_seed(1)
    ckpt = _build(items, cloze_dir).build(TrainConfig(seed=1), console)
    model, vocab = ckpt.model, ckpt.vocabulary
    assert vocab is not None
    for name, value in cloze.model.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], value), name
    source = cloze.model.embedder.embedding.weight
    for word in ("the", "movie", "was", "dull"):
        assert torch.equal(
            model.embedding.weight[vocab.id_of(word)], source[cloze.vocabulary.id_of(word)]
        )
    # a word the cloze model never saw keeps its fresh initialisation
    fresh = ClassifyTrainer(items, items, {"embedding_dim": 6, "hidden_size": 8}, TokenizerConfig())
    torch.manual_seed(1)
    plain = fresh.build(TrainConfig(seed=1), console).model
    superb = vocab.id_of("superb")
    assert torch.equal(model.embedding.weight[superb], plain.embedding.weight[superb])
    assert torch.count_nonzero(model.embedding.weight[0]) == 0  # padding stays zero
    assert "vectors of 4 of 5 vocabulary words copied" in console.export_text()


def test_init_from_refuses_what_does_not_fit(tmp_path: Path) -> None:
    from rich.console import Console

    cloze_dir = tmp_path / "cloze"
    random_checkpoint("cloze", texts=CLOZE_TEXTS, save_to=cloze_dir, hidden_size=6)
    items = [LabelledText("the movie", "pos", 1), LabelledText("dull", "neg", 2)]
    with pytest.raises(CheckpointError) as err:
        _build(items, cloze_dir).build(TrainConfig(), Console(stderr=True))
    assert "hidden_size 6 (this run's --hidden-size is 8)" in str(err.value)
    with pytest.raises(CheckpointError, match=r"layers do not fit.*num_layers 1 .*--layers is 2"):
        _build(items, cloze_dir, hidden_size=6, num_layers=2).build(
            TrainConfig(), Console(stderr=True)
        )
    classifier = tmp_path / "classifier"
    random_checkpoint("classify", save_to=classifier)
    with pytest.raises(
        CheckpointError, match="is a classify checkpoint; --init-from takes a cloze"
    ):
        _build(items, classifier).build(TrainConfig(), Console(stderr=True))


def test_init_from_on_the_command_line(data_dir: Path, tmp_path: Path) -> None:
    texts = [it.text for it in read_classification(data_dir / "train.tsv")]
    cloze_dir = tmp_path / "cloze"
    random_checkpoint("cloze", texts=texts[:40], save_to=cloze_dir, embedding_dim=4, hidden_size=4)
    data = ["--data", data_dir / "train.tsv", "--dev", data_dir / "dev.tsv", *TINY]
    run = train(*data, "--out", tmp_path / "run", "--init-from", cloze_dir)
    assert run.exit_code == 0, run.stderr
    assert "init-from" in run.stderr and "recurrent layer(s)" in run.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["data"]["init_from"] == (
        "cloze"
    )
    run = train(*data, "--out", tmp_path / "run", "--resume", "--init-from", cloze_dir)
    assert run.exit_code == 2 and "--init-from" in run.stderr and "--resume" in run.stderr
    run = train(*data, "--out", tmp_path / "x", "--init-from", cloze_dir, "--hidden-size", "5")
    assert run.exit_code == 2 and "hidden_size 4 (this run's --hidden-size is 5)" in run.stderr
    assert not (tmp_path / "x").exists()


def test_labels_of_another_set_are_a_data_error(trained) -> None:  # type: ignore[no-untyped-def]
    out, _ = trained
    with pytest.raises(DataError, match="differ from the training data's"):
        teacher_logits(Distillation(out), ["a", "b", "c"], ["x"], batch_size=4)


def test_ensemble_eval_recipe_scores_members_and_their_average(  # type: ignore[no-untyped-def]
    trained, data_dir: Path, tmp_path: Path
) -> None:
    """models/recipes/ensemble_eval.py: each checkpoint's accuracy and the probability mean's."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models" / "recipes"))
    try:
        from ensemble_eval import score
    finally:
        sys.path.pop(0)
    out, ckpt = trained
    other = tmp_path / "other"
    texts = [it.text for it in read_classification(data_dir / "train.tsv")]
    random_checkpoint("classify", texts=texts, save_to=other, labels=ckpt.labels)
    result = score(data_dir / "dev.tsv", [out, other])
    members = result["members"]
    assert isinstance(members, list) and len(members) == 2
    assert members[0]["accuracy"] == round(ckpt.summary["dev_metrics"]["accuracy"], 4)
    alone = score(data_dir / "dev.tsv", [out, out])  # identical members: the member itself
    assert alone["ensemble"] == {k: members[0][k] for k in ("accuracy", "macro_f1")}
    random_checkpoint("classify", save_to=tmp_path / "ab", labels=["a", "b"])
    with pytest.raises(BiLSTMError, match=r"ab: labels \['a', 'b'\] differ from those of"):
        score(data_dir / "dev.tsv", [out, tmp_path / "ab"])


def test_several_teachers_on_the_command_line(trained, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--teacher repeats (or a list in --config); each is checked and named when at fault."""
    teacher, ckpt = trained
    texts = [it.text for it in read_classification(data_dir / "train.tsv")]
    second = tmp_path / "second"
    random_checkpoint("classify", texts=texts, save_to=second, labels=ckpt.labels)
    data = ["--data", data_dir / "train.tsv", "--dev", data_dir / "dev.tsv", *TINY]
    run = train(*data, "--out", tmp_path / "s", "--teacher", teacher, "--teacher", second)
    assert run.exit_code == 0, run.stderr
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["data"]["teacher"] == {
        "checkpoints": [teacher.name, "second"],
        "temperature": 2.0,
        "weight": 0.5,
    }
    # the same from --config, and errors that name the teacher at fault
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"teacher": [str(teacher), str(tmp_path / "missing")]}))
    run = train(*data, "--out", tmp_path / "c", "--config", config)
    assert run.exit_code == 2 and "'teacher'" in run.stderr and "missing" in run.stderr
    tagger = tmp_path / "tagger"
    random_checkpoint("tag", save_to=tagger)
    run = train(*data, "--out", tmp_path / "t", "--teacher", teacher, "--teacher", tagger)
    assert run.exit_code == 2 and f"--teacher {tagger}: is a tag checkpoint" in run.stderr
    assert not (tmp_path / "t").exists()
    run = train(*data, "--out", second, "--force", "--teacher", teacher, "--teacher", second)
    assert run.exit_code == 2 and f"--teacher {second} is the --out folder" in run.stderr
    run = train(*data, "--out", tmp_path / "d", "--teacher", second, "--teacher", second)
    assert run.exit_code == 2 and "is given twice" in run.stderr
    config.write_text(json.dumps({"teacher": [str(second)], "distill_weight": 0.9}))
    run = train(*data, "--out", tmp_path / "one", "--config", config)
    assert run.exit_code == 0, run.stderr
    recorded = json.loads((tmp_path / "one" / "summary.json").read_text())["data"]["teacher"]
    assert recorded == {"checkpoint": "second", "temperature": 2.0, "weight": 0.9}


# --distill-augment: synthetic texts for the teachers to label (models/augment.py)

from bilstm.core.tokenizer import Tokenizer  # noqa: E402
from bilstm.core.vocab import UNK_ID, Vocabulary  # noqa: E402
from bilstm.models.augment import MASK, Augmentation, synthesize  # noqa: E402
from bilstm.models.classify import NO_LABEL, ClassifySpec, _synthetic_ids  # noqa: E402

AUG_TEXTS = [
    "a great , moving film .".split(),
    "dull and far too long".split(),
    ["ok"],
    [],
    "the cast is fine but the plot is thin !".split(),
]


def test_synthetic_texts_are_deterministic_for_a_seed() -> None:
    aug = Augmentation(6, seed=7)
    first = synthesize(AUG_TEXTS, aug)
    assert first == synthesize(AUG_TEXTS, Augmentation(6, seed=7))
    assert first != synthesize(AUG_TEXTS, Augmentation(6, seed=8))
    # pinned: the draws do not depend on hash seeds or dict order (Python's random is stable)
    assert first[:2] == [
        (0, ("a", "moving", MASK, "moving", "film", MASK)),
        (0, ("film", ".")),
    ]
    words = {t for text in AUG_TEXTS for t in text}
    for index, tokens in first:
        source = AUG_TEXTS[index]
        assert tokens and tuple(tokens) != tuple(source)
        assert set(tokens) <= words | {MASK}
        # swapped tokens keep their kind: punctuation stays punctuation
        if len(tokens) == len(source):
            for new, old in zip(tokens, source, strict=True):
                if new != MASK:
                    assert new.isalnum() == old.isalnum()
    per_text = [sum(1 for i, _ in first if i == k) for k in range(len(AUG_TEXTS))]
    assert all(n <= 6 for n in per_text) and per_text[3] == 0  # an empty text gives none
    assert len(set(first)) == len(first)  # duplicates dropped
    assert synthesize(AUG_TEXTS, Augmentation(0)) == []


def test_each_rule_of_the_synthesis() -> None:
    # nothing may change: every copy equals its text and is dropped
    assert synthesize(AUG_TEXTS, Augmentation(5, mask=0, swap=0, ngram=0)) == []
    # every token masked: one all-unknown copy per non-empty text (the rest are repeats)
    masked = synthesize(AUG_TEXTS, Augmentation(5, mask=1, swap=0, ngram=0))
    assert masked == [(i, (MASK,) * len(t)) for i, t in enumerate(AUG_TEXTS) if t]
    # always an n-gram: contiguous pieces of the text, 1 to 5 tokens
    grams = synthesize(AUG_TEXTS, Augmentation(20, mask=0, swap=0, ngram=1, seed=3))
    assert {len(t) for _, t in grams} == {1, 2, 3, 4, 5}
    for index, tokens in grams:
        source, n = AUG_TEXTS[index], len(tokens)
        assert any(tuple(source[s : s + n]) == tokens for s in range(len(source)))
    # always swapped: the same length, words drawn from the training words
    swapped = synthesize(AUG_TEXTS, Augmentation(3, mask=0, swap=1, ngram=0, seed=1))
    assert all(len(t) == len(AUG_TEXTS[i]) and MASK not in t for i, t in swapped)


def test_augmentation_settings_are_checked() -> None:
    with pytest.raises(InputError, match=r"--distill-augment -1: .* 0 \(none\) to 100"):
        Augmentation(-1)
    with pytest.raises(InputError, match="--distill-augment 101"):
        Augmentation(101)
    with pytest.raises(InputError, match="whole number"):
        Augmentation(2.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"--augment-ngram 1.5: a probability"):
        Augmentation(3, ngram=1.5)
    with pytest.raises(InputError, match=r"--augment-mask 0.6 \+ --augment-swap 0.6 is over 1"):
        Augmentation(3, mask=0.6, swap=0.6)


def test_a_teacher_reads_synthetic_tokens_with_its_own_tokenizer() -> None:
    vocab = Vocabulary(["<pad>", "<unk>", "great", "film", "."])
    tok = Tokenizer(TokenizerConfig(lowercase=True, max_length=3))
    rows = _synthetic_ids(tok, vocab, [("Great", MASK, "film"), ("great", "film", ".", "x")])
    assert rows == [[2, UNK_ID, 3], [2, 3, 4]]  # lower-cased; masked = unknown; cut at 3
    assert _synthetic_ids(tok, vocab, [("?!",)]) == [[UNK_ID, UNK_ID]]  # its own tokens


def test_the_hard_term_skips_synthetic_texts() -> None:
    """Cross-entropy over the labelled rows of a batch only; none in it: the soft term alone."""
    ids = {"train": [[2, 3], [3], [2], [3, 2]], "dev": [[2]]}
    labels = {"train": [0, 1, NO_LABEL, NO_LABEL], "dev": [0]}
    teacher = torch.tensor([[1.0, -1.0], [0.0, 2.0], [3.0, 0.0], [-1.0, 1.0]])
    soft = SoftTargets(teacher, temperature=2.0, weight=0.75)
    spec = ClassifySpec(ids, labels, ["neg", "pos"], 4, torch.device("cpu"), None, soft)
    from bilstm.models.config import ModelConfig
    from bilstm.models.network import BiLSTMClassifier

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=4, num_labels=2, embedding_dim=4, hidden_size=3)
    model = BiLSTMClassifier(cfg).eval()
    rng = random.Random(0)

    def parts(batch: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = spec._forward(model, "train", batch)
        kl = torch.nn.functional.kl_div(
            torch.log_softmax(logits / 2, -1),
            soft.targets(batch, logits.device),
            reduction="batchmean",
        )
        return logits, kl

    with torch.no_grad():
        logits, kl = parts([0, 1, 2, 3])
        ce = torch.nn.functional.cross_entropy(logits[:2], torch.tensor([0, 1]))
        got = spec.loss(model, "train", [0, 1, 2, 3], rng)
        assert got.item() == pytest.approx((0.25 * ce + 0.75 * 4 * kl).item(), rel=1e-6)
        _, kl = parts([2, 3])
        assert spec.loss(model, "train", [2, 3], rng).item() == pytest.approx(
            (0.75 * 4 * kl).item(), rel=1e-6
        )


def _distilled(trained, data_dir: Path, tmp_path: Path, name: str, augment: Augmentation | None):  # type: ignore[no-untyped-def]
    from bilstm.models.classify import train_classifier

    teacher, _ = trained
    return train_classifier(
        read_classification(data_dir / "train.tsv"),
        read_classification(data_dir / "dev.tsv"),
        tmp_path / name,
        model_cfg={"embedding_dim": 6, "hidden_size": 4, "num_layers": 1},
        train_cfg=TrainConfig(epochs=2, batch_size=16, seed=5),
        tokenizer_cfg=TokenizerConfig(max_length=20),
        data_info={},
        distill=Distillation(teacher, 2.0, 0.5, augment),
    )


def test_no_copies_changes_nothing_bit_for_bit(trained, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plain = _distilled(trained, data_dir, tmp_path, "plain", None)
    zero = _distilled(trained, data_dir, tmp_path, "zero", Augmentation(0, seed=5))

    def history(name: str) -> list[dict[str, object]]:
        rows = (tmp_path / name / "history.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(r).items() if k != "seconds"} for r in rows]

    assert history("plain") == history("zero") and len(history("plain")) == 2
    for name, value in plain.model.state_dict().items():
        assert torch.equal(value, zero.model.state_dict()[name]), name


def test_the_student_learns_the_synthetic_texts(  # type: ignore[no-untyped-def]
    trained, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Synthetic texts follow the training texts in the student's batches, each with the
    teachers' soft target of its own tokens and no label."""
    teacher, _ = trained
    items = read_classification(data_dir / "train.tsv")
    seen: list[int] = []
    specs: list[ClassifySpec] = []
    loss = ClassifySpec.loss

    def spy(self, model, split, batch, rng):  # type: ignore[no-untyped-def]
        specs.append(self)
        seen.extend(batch)
        return loss(self, model, split, batch, rng)

    monkeypatch.setattr(ClassifySpec, "loss", spy)
    aug = Augmentation(3, seed=5)
    ckpt = _distilled(trained, data_dir, tmp_path, "aug", aug)
    spec = specs[0]
    tok = Tokenizer(TokenizerConfig(max_length=20))
    synthetic = synthesize([tok.tokenize(it.text) for it in items], aug)
    real = len(items)
    assert len(synthetic) > 2 * real  # most copies survive the duplicate check
    assert len(spec.ids["train"]) == real + len(synthetic)
    assert spec.labels["train"][real:] == [NO_LABEL] * len(synthetic)
    assert ckpt.vocabulary is not None
    assert spec.ids["train"][real + 5] == ckpt.vocabulary.encode(synthetic[5][1])
    # every text, real and synthetic, is in each epoch's batches
    assert sorted(seen) == sorted(list(range(real + len(synthetic))) * 2)
    # the soft target of a synthetic row is the teacher's output on those tokens
    tokens = [list(t) for _, t in synthetic[:3]]
    want = teacher_logits(Distillation(teacher), ckpt.labels, [], 16, tokens)[0]
    assert spec.soft is not None
    got = spec.soft.targets([real, real + 1, real + 2], torch.device("cpu"))
    assert torch.allclose(got, torch.softmax(want / 2.0, -1), atol=1e-6)


def test_distill_augment_on_the_command_line(trained, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    teacher, _ = trained
    data = ["--data", data_dir / "train.tsv", "--dev", data_dir / "dev.tsv", *TINY]
    run = train(*data, "--out", tmp_path / "a", "--teacher", teacher, "--distill-augment", "2",
                "--augment-ngram", "0.5")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert "synthetic texts labelled by the teachers" in run.stderr
    recorded = json.loads((tmp_path / "a" / "summary.json").read_text())["data"]["teacher"]
    assert recorded["augment"] == {"copies": 2, "mask": 0.1, "swap": 0.1, "ngram": 0.5, "seed": 13}
    # 0 (the default) is no augmentation, and the record is as before
    run = train(*data, "--out", tmp_path / "z", "--teacher", teacher, "--distill-augment", "0")
    assert run.exit_code == 0, run.stderr
    assert "synthetic" not in run.stderr
    recorded = json.loads((tmp_path / "z" / "summary.json").read_text())["data"]["teacher"]
    assert "augment" not in recorded
    # nonsense is refused before any data is read, and nothing is written
    mix = ["--augment-mask", "0.7", "--augment-swap", "0.7"]
    for args, says in [
        (["--teacher", teacher, "--distill-augment", "-1"], "0 (none) to 100"),
        (["--distill-augment", "3"], "give --teacher CHECKPOINT too"),
        (["--teacher", teacher, "--augment-mask", "0.2"], "give --distill-augment N"),
        (["--teacher", teacher, "--distill-augment", "3", *mix], "is over 1"),
    ]:
        run = train(*data, "--out", tmp_path / "bad", *args)
        assert run.exit_code == 2 and says in run.stderr, (args, run.stderr)
        assert not (tmp_path / "bad").exists()
    cloze = ["--data", data_dir / "train.tsv", "--dev", data_dir / "dev.tsv"]
    run = bilstm("train", "cloze", *cloze, "--out", tmp_path / "c", "--distill-augment", "2")
    assert run.exit_code == 2 and "--distill-augment applies to classify" in run.stderr
