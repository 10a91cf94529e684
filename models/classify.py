"""Text classification: data encoding, loss and metrics for `bilstm train classify`."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from bilstm.core import datasets
from bilstm.core.batching import length_batches, pad_batch
from bilstm.core.datasets import LabelledText
from bilstm.core.errors import CheckpointError, DataError, InputError
from bilstm.core.metrics import classification_metrics
from bilstm.core.tokenizer import Tokenizer, TokenizerConfig
from bilstm.core.vocab import UNK_ID, Vocabulary
from bilstm.models import options, skeleton
from bilstm.models.augment import MASK, Augmentation, Synthetic, synthesize
from bilstm.models.checkpoint import Checkpoint, load_checkpoint
from bilstm.models.config import ModelConfig, TrainConfig
from bilstm.models.network import BiLSTMClassifier, BiLSTMCloze
from bilstm.models.options import TrainOptions
from bilstm.models.skeleton import Prepared
from bilstm.models.training import apply_vectors

NUM_EXAMPLES = 64

NO_LABEL = -100
"""The label index of a synthetic training text (`--distill-augment`): it has no gold label,
so the cross-entropy skips it (CrossEntropyLoss's default ignore_index) and only the teachers'
soft targets teach it."""


class ClassifySpec:
    """Cross-entropy over classes; dev accuracy picks the best epoch."""

    metric = "accuracy"
    higher_is_better = True

    def __init__(
        self,
        ids: dict[str, list[list[int]]],
        labels: dict[str, list[int]],
        names: list[str],
        batch_size: int,
        device: torch.device,
        weight: torch.Tensor | None,
        soft: SoftTargets | None = None,
    ) -> None:
        self.ids, self.labels, self.names = ids, labels, names
        self.batch_size, self.device = batch_size, device
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=NO_LABEL)
        self.soft = soft

    def lengths(self, split: str) -> list[int]:
        return [len(s) for s in self.ids[split]]

    def _forward(self, model: torch.nn.Module, split: str, batch: list[int]) -> torch.Tensor:
        ids, lens = pad_batch([self.ids[split][i] for i in batch])
        return model(torch.from_numpy(ids).to(self.device), torch.from_numpy(lens))  # type: ignore[no-any-return]

    def loss(
        self, model: torch.nn.Module, split: str, batch: list[int], rng: random.Random
    ) -> torch.Tensor:
        target = torch.tensor([self.labels[split][i] for i in batch], device=self.device)
        logits = self._forward(model, split, batch)
        if (target == NO_LABEL).all():
            # a batch of synthetic texts only: no labels, so no cross-entropy (its mean over
            # no rows would be 0/0); the soft targets below are the whole loss
            hard = logits.new_zeros(())
        else:
            # the mean over the batch's labelled texts: synthetic ones are skipped (NO_LABEL)
            hard = self.loss_fn(logits, target)
        if self.soft is None or split != "train":
            return hard  # type: ignore[no-any-return]
        return self.soft.mix(hard, logits, batch)

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, Any]:
        preds = [0] * len(self.ids[split])
        with torch.inference_mode():
            for batch in length_batches(self.lengths(split), self.batch_size):
                for i, p in zip(
                    batch, self._forward(model, split, batch).argmax(-1).tolist(), strict=True
                ):
                    preds[i] = p
        return classification_metrics(self.labels[split], preds, self.names)


@dataclass(frozen=True)
class Distillation:
    """`--teacher`: learn from trained classifiers' softened outputs as well as the labels."""

    teachers: tuple[Path, ...]
    """The teachers' checkpoint folders (classify checkpoints with the same labels), at least
    one (a single Path is taken as one teacher); with several, the student learns the
    average of their softened outputs."""
    temperature: float = 2.0
    """Softmax temperature T for both sides of the soft-target loss."""
    weight: float = 0.5
    """Share `a` of the soft-target loss: (1 - a) * cross-entropy + a * T^2 * KL."""
    augment: Augmentation | None = None
    """Synthetic texts for the teachers to label as well (`--distill-augment`); None or 0
    copies: the training texts only."""

    def __post_init__(self) -> None:
        if isinstance(self.teachers, str | Path):  # one folder given alone
            object.__setattr__(self, "teachers", (Path(self.teachers),))
        if not self.teachers:
            raise InputError("distillation needs at least one teacher checkpoint folder")

    def synthetic(self, tokens: Sequence[Sequence[str]]) -> list[Synthetic]:
        """The synthetic texts made from the training texts' `tokens` (none without augment)."""
        return synthesize(tokens, self.augment) if self.augment is not None else []


class SoftTargets:
    """The teachers' logits for every training text, computed once (eval mode, no gradients).

    A teacher is frozen and deterministic in eval mode, so its outputs per text never change:
    running it once before training gives exactly the targets of running it every batch, and
    the averaged soft targets are computed once here as well. `logits` is [teachers, texts,
    labels] (or [texts, labels] for a single teacher).

    The arithmetic mean of the probabilities (not of the log-probabilities) is the ensemble
    whose accuracy is measured (`ensemble_eval.py` averages the same way), and where the
    teachers disagree it keeps that disagreement as a softer target; a mean of logits lets one
    over-confident teacher outvote the others. With one teacher the mean over a single row is
    that row, bit for bit: the loss is the one-teacher loss.
    """

    def __init__(self, logits: torch.Tensor, temperature: float, weight: float) -> None:
        logits = logits if logits.dim() == 3 else logits.unsqueeze(0)
        self.probabilities = torch.softmax(logits / temperature, dim=-1).mean(0)
        self.temperature, self.weight = temperature, weight

    def targets(self, batch: list[int], device: torch.device) -> torch.Tensor:
        """The soft targets of `batch`: the teachers' temperature-T probabilities, averaged."""
        return self.probabilities[batch].to(device)

    def mix(self, hard: torch.Tensor, student: torch.Tensor, batch: list[int]) -> torch.Tensor:
        """Hinton et al. (2015): (1 - a) * CE(labels) + a * T^2 * KL(teacher_T || student_T).

        T^2 keeps the soft term's gradients on the scale of the hard term's when T changes.
        """
        t = self.temperature
        teacher = self.targets(batch, student.device)
        kl = torch.nn.functional.kl_div(
            torch.log_softmax(student / t, dim=-1), teacher, reduction="batchmean"
        )
        return (1 - self.weight) * hard + self.weight * t * t * kl


def teacher_logits(
    distill: Distillation,
    labels: list[str],
    texts: Sequence[str],
    batch_size: int,
    synthetic: Sequence[Sequence[str]] = (),
) -> torch.Tensor:
    """Every teacher's logits [teachers, texts, labels], columns in the student's label order.

    Each teacher is checked (a classifier with the student's labels) before any is run;
    errors name the --teacher at fault. A teacher reads each text with its own tokenizer and
    vocabulary, so teachers may differ from the student and from each other in every
    setting but their labels. `synthetic` token sequences (`--distill-augment`) follow the
    texts as further rows: a teacher reads each token with its tokenizer (so its lower-casing
    applies) and a masked token as its unknown word.
    """
    teachers = [_load_teacher(path, labels) for path in distill.teachers]
    return torch.stack(
        [_logits(teacher, labels, texts, batch_size, synthetic) for teacher in teachers]
    )


def _load_teacher(path: Path, labels: list[str]) -> Checkpoint:
    """The checkpoint at `path`, refused unless it is a classifier with the same labels."""
    teacher = load_checkpoint(path)
    where = f"--teacher {path}"
    if not isinstance(teacher.model, BiLSTMClassifier) or teacher.tokenizer is None:
        raise CheckpointError(
            f"{where}: is a {teacher.task} checkpoint; the teacher must be a classify "
            "checkpoint (the --out folder of `bilstm train classify`) with the same labels"
        )
    if sorted(teacher.labels) != sorted(labels):
        raise DataError(
            f"{where}: the teacher's labels {teacher.labels} differ from the training data's "
            f"{labels}; distillation needs a teacher trained on the same label set"
        )
    return teacher


def _logits(
    teacher: Checkpoint,
    labels: list[str],
    texts: Sequence[str],
    batch_size: int,
    synthetic: Sequence[Sequence[str]] = (),
) -> torch.Tensor:
    """One teacher's eval-mode logits [texts + synthetic, labels] in the student's label order."""
    assert teacher.tokenizer is not None and teacher.vocabulary is not None
    tok, vocab = Tokenizer(teacher.tokenizer), teacher.vocabulary
    ids = [vocab.encode(tok.tokenize(t)) or [UNK_ID] for t in texts]
    if synthetic:
        ids += _synthetic_ids(tok, vocab, synthetic)
    out = torch.empty(len(ids), len(labels))
    model = teacher.model.eval()
    with torch.inference_mode():
        for batch in length_batches([len(x) for x in ids], batch_size):
            padded, lens = pad_batch([ids[i] for i in batch])
            out[batch] = model(torch.from_numpy(padded), torch.from_numpy(lens)).float()
    order = [teacher.labels.index(lab) for lab in labels]
    return out[:, order].clone()


def _synthetic_ids(
    tok: Tokenizer, vocab: Vocabulary, synthetic: Sequence[Sequence[str]]
) -> list[list[int]]:
    """Ids of token sequences (another model's tokens) under `tok` and `vocab`.

    Each distinct token is tokenized once (memo): the synthetic set repeats the training
    vocabulary many times over. A masked token is the unknown word; the sequence is cut at
    this tokenizer's max_length.
    """
    memo: dict[str, list[int]] = {MASK: [UNK_ID]}
    limit = tok.config.max_length
    ids = []
    for tokens in synthetic:
        row: list[int] = []
        for token in tokens:
            if token not in memo:
                memo[token] = vocab.encode(tok.tokenize(token))
            row += memo[token]
        ids.append(row[:limit] or [UNK_ID])
    return ids


INIT_FIELDS = ("embedding_dim", "hidden_size", "num_layers", "cell", "proj_size", "merge")
"""Settings that must match for `--init-from` to copy the embedding and recurrent layers."""


def init_from_cloze(
    model: BiLSTMClassifier,
    vocab: Vocabulary,
    tokenizer_cfg: TokenizerConfig,
    source: Path,
    console: Console,
) -> None:
    """`--init-from`: copy a cloze checkpoint's recurrent layers and its word vectors.

    The embedding rows of words both vocabularies hold are copied (the classifier's
    vocabulary comes from its own training data); the recurrent layers are copied whole, so
    their shapes (embedding size, hidden size, layers, cell, projection, merge) must match.
    """
    where = f"--init-from {source}"
    cloze = load_checkpoint(source)
    if not isinstance(cloze.model, BiLSTMCloze) or cloze.tokenizer is None:
        raise CheckpointError(
            f"{where}: is a {cloze.task} checkpoint; --init-from takes a cloze checkpoint "
            "(the --out folder of `bilstm train cloze`)"
        )
    ours, theirs = model.cfg, cloze.model_config
    flags = {"num_layers": "layers"}
    differ = [
        f"{name} {getattr(theirs, name)} (this run's --{flags.get(name, name).replace('_', '-')} "
        f"is {getattr(ours, name)})"
        for name in INIT_FIELDS
        if getattr(ours, name) != getattr(theirs, name)
    ]
    if cloze.tokenizer.lowercase != tokenizer_cfg.lowercase:
        differ.append(
            f"lowercase {cloze.tokenizer.lowercase} (this run's is {tokenizer_cfg.lowercase})"
        )
    if theirs.char_vocab_size:
        differ.append("character features (a classifier has none)")
    if differ:
        raise CheckpointError(
            f"{where}: the cloze model's layers do not fit this classifier: it has "
            + "; ".join(differ)
            + ". Give the same settings as the cloze run, or pretrain a cloze model with these"
        )
    known = cloze.vocabulary
    assert known is not None  # every text checkpoint has one
    source_embedding = cloze.model.embedder.embedding.weight
    shared = [(i, known.id_of(t)) for i, t in enumerate(vocab.tokens) if t in known]
    with torch.no_grad():
        for mine, theirs_id in shared:
            if mine > 0:  # keep the padding row zero
                model.embedding.weight[mine] = source_embedding[theirs_id]
        model.encoder.load_state_dict(cloze.model.encoder.state_dict())
    console.print(
        f"init-from {source}: {ours.num_layers} recurrent layer(s) and the vectors of "
        f"{sum(1 for mine, _ in shared if mine > 1)} of {len(vocab) - 2} vocabulary words copied"
    )


@dataclass
class ClassifyTrainer:
    """The classify hooks of the training skeleton (`bilstm.models.skeleton.train`)."""

    train_items: Sequence[LabelledText]
    dev_items: Sequence[LabelledText]
    model_cfg: dict[str, Any]
    tokenizer_cfg: TokenizerConfig
    paths: tuple[Path, Path] | None = None
    distill: Distillation | None = None
    init_from: Path | None = None
    name: str = "classify"

    def build(self, cfg: TrainConfig, console: Console) -> Checkpoint:
        """Vocabulary and labels from the training texts; the first dev texts as examples."""
        tok = Tokenizer(self.tokenizer_cfg)
        vocab = Vocabulary.build(
            (tok.tokenize(it.text) for it in self.train_items),
            min_freq=cfg.min_freq,
            max_size=cfg.max_vocab,
        )
        labels = sorted({it.label for it in self.train_items})
        model_config = ModelConfig(
            vocab_size=len(vocab), num_labels=len(labels), task=self.name, **self.model_cfg
        )
        model = BiLSTMClassifier(model_config)
        apply_vectors(model.embedding, vocab, cfg, console)
        if self.init_from is not None:
            init_from_cloze(model, vocab, self.tokenizer_cfg, self.init_from, console)
        return Checkpoint(
            model=model,
            model_config=model_config,
            train_config=cfg,
            tokenizer=self.tokenizer_cfg,
            vocabulary=vocab,
            labels=labels,
            examples=[it.text for it in self.dev_items[:NUM_EXAMPLES]],
        )

    def prepare(
        self, base: Checkpoint, cfg: TrainConfig, device: torch.device, resume: bool
    ) -> Prepared:
        """Token ids and label indexes per split, and class weights if asked for."""
        assert base.vocabulary is not None and base.tokenizer is not None
        vocab, labels, tok = base.vocabulary, base.labels, Tokenizer(base.tokenizer)
        splits = {"train": self.train_items, "dev": self.dev_items}
        _check_known_labels(
            labels, {"training": self.train_items, "dev": self.dev_items}, self.paths, resume
        )
        index = {lab: i for i, lab in enumerate(labels)}
        tokens = {name: [tok.tokenize(it.text) for it in items] for name, items in splits.items()}
        # A text with no tokens cannot go through a packed RNN (length 0). In training it is
        # seen as a single <unk>; at inference such a text gets no label at all.
        ids = {name: [vocab.encode(t) or [UNK_ID] for t in rows] for name, rows in tokens.items()}
        gold = {name: [index[it.label] for it in items] for name, items in splits.items()}
        # class weights come from the labelled texts only (synthetic ones have no label)
        weight = _class_weights(gold["train"], len(labels), device) if cfg.class_weights else None
        soft, extra = None, ""
        if self.distill is not None:
            texts = [it.text for it in self.train_items]
            synthetic = [toks for _, toks in self.distill.synthetic(tokens["train"])]
            started = time.perf_counter()
            logits = teacher_logits(self.distill, labels, texts, cfg.batch_size, synthetic)
            soft = SoftTargets(logits.to(device), self.distill.temperature, self.distill.weight)
            if synthetic:
                # synthetic texts follow the training texts: row i of the soft targets is
                # item i of the training split
                ids["train"] += [vocab.encode(t) for t in synthetic]
                gold["train"] += [NO_LABEL] * len(synthetic)
                extra = (
                    f", plus {len(synthetic)} synthetic texts labelled by the teachers "
                    f"({len(texts) + len(synthetic)} texts scored by "
                    f"{len(self.distill.teachers)} teacher(s) in "
                    f"{time.perf_counter() - started:.0f}s)"
                )
        return Prepared(
            spec=ClassifySpec(ids, gold, labels, cfg.batch_size, device, weight, soft),
            base=base,
            train_examples=len(self.train_items),
            dev_examples=len(self.dev_items),
            description=(
                f"train {len(self.train_items)} texts, dev {len(self.dev_items)}, vocabulary "
                f"{len(vocab)}, labels {labels}{extra}"
            ),
        )

    def finish(
        self, ckpt: Checkpoint, prepared: Prepared, out: Path, console: Console
    ) -> Checkpoint:
        """Print the best epoch's dev accuracy."""
        console.print(
            f"best epoch {ckpt.summary['best_epoch']}: dev accuracy "
            f"{ckpt.summary['dev_metrics'].get('accuracy', 0.0):.4f}; saved {out}"
        )
        return ckpt


def _class_weights(gold: list[int], num_labels: int, device: torch.device) -> torch.Tensor:
    """Inverse class frequency, so that rare classes weigh as much in the loss as common ones."""
    counts = Counter(gold)
    return torch.tensor(
        [len(gold) / (num_labels * max(counts[i], 1)) for i in range(num_labels)],
        dtype=torch.float32,
        device=device,
    )


def train_classifier(
    train_items: Sequence[LabelledText],
    dev_items: Sequence[LabelledText],
    out: Path,
    model_cfg: dict[str, Any],
    train_cfg: TrainConfig,
    tokenizer_cfg: TokenizerConfig,
    data_info: dict[str, Any],
    console: Console | None = None,
    resume: bool = False,
    paths: tuple[Path, Path] | None = None,
    distill: Distillation | None = None,
    init_from: Path | None = None,
) -> Checkpoint:
    """Train a classifier, keep the best epoch by dev accuracy, save it to `out` each epoch.

    `paths` (training, dev file) make error messages name the files. `distill` adds a
    teacher's soft targets to the loss; `init_from` (a cloze checkpoint) initialises the
    embedding and recurrent layers of a new run.

    `model_cfg` holds `ModelConfig` fields except vocab_size/num_labels, which come from data.
    With `resume`, training continues from the checkpoint at `out`.
    """
    task = ClassifyTrainer(
        train_items, dev_items, model_cfg, tokenizer_cfg, paths, distill, init_from
    )
    return skeleton.train(task, out, train_cfg, data_info, console, resume)


def train_from_options(
    opts: TrainOptions, model_cfg: dict[str, Any], train_cfg: TrainConfig, console: Console
) -> Checkpoint:
    """`bilstm train classify`: read the TSV/JSONL files and train."""
    read = datasets.read_classification
    distill = None
    if opts.teacher:
        augment = None
        if opts.distill_augment:
            augment = Augmentation(
                opts.distill_augment,
                mask=opts.augment_mask,
                swap=opts.augment_swap,
                ngram=opts.augment_ngram,
                seed=opts.seed,
            )
        distill = Distillation(opts.teacher, opts.distill_temperature, opts.distill_weight, augment)
    return train_classifier(
        read(opts.data, opts.skip_bad_lines),
        read(opts.dev, opts.skip_bad_lines),
        opts.out,
        model_cfg,
        train_cfg,
        TokenizerConfig(lowercase=opts.lowercase, max_length=opts.max_length),
        options.data_info(opts),
        console=console,
        resume=opts.resume,
        paths=(opts.data, opts.dev),
        distill=distill,
        init_from=opts.init_from,
    )


def _check_known_labels(
    labels: list[str],
    splits: dict[str, Sequence[LabelledText]],
    paths: tuple[Path, Path] | None,
    resume: bool,
) -> None:
    """Refuse data with a label the model has no output for, naming file:line of its first use."""
    known = set(labels)
    where = dict(zip(splits, paths or ("training data", "dev data"), strict=True))
    unseen: dict[str, tuple[str, int]] = {}
    for split, items in splits.items():
        for item in items:
            if item.label not in known and item.label not in unseen:
                unseen[item.label] = (split, item.line)
    if not unseen:
        return
    label, (split, line) = next(iter(unseen.items()))
    more = f" (all unknown labels: {sorted(unseen)})" if len(unseen) > 1 else ""
    origin = "the checkpoint being resumed" if resume else f"the training data {where['training']}"
    raise DataError(
        f"{where[split]}:{line}: label {label!r} is not among the labels of {origin} "
        f"({labels}){more}; the model can only predict labels seen in training. Add training "
        "examples with it, or fix the label"
    )
