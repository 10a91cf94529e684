"""Checkpoints: a folder of JSON and safetensors that loading can never execute.

config.json         format version, task, labels, tokenizer, model and train settings
vocab.json          tokens (index = id)
weights.safetensors model weights (the best epoch)
history.jsonl       one line of metrics per epoch
summary.json        data, counts, best dev metrics, timings
examples.json       a few dev texts, used by the exporter's parity check
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from bilstm.core.errors import CheckpointError
from bilstm.core.tokenizer import TokenizerConfig
from bilstm.core.vocab import Vocabulary
from bilstm.models.config import ModelConfig, TrainConfig
from bilstm.models.network import build_model
from bilstm.models.tasks import TASKS

FORMAT_VERSION = 1
CONFIG = "config.json"
VOCAB = "vocab.json"
WEIGHTS = "weights.safetensors"
HISTORY = "history.jsonl"
SUMMARY = "summary.json"
EXAMPLES = "examples.json"
TRAINER_STATE = "trainer_state.pt"

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    """A trained model with everything needed to use, evaluate or export it."""

    model: torch.nn.Module
    model_config: ModelConfig
    train_config: TrainConfig
    tokenizer: TokenizerConfig | None
    vocabulary: Vocabulary | None
    labels: list[str]
    task_config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    examples: list[Any] = field(default_factory=list)

    @property
    def task(self) -> str:
        """The model's task."""
        return self.model_config.task


OWN_FILES = (CONFIG, VOCAB, WEIGHTS, HISTORY, SUMMARY, EXAMPLES, TRAINER_STATE)
"""The files a checkpoint consists of: the only ones a save may replace or remove."""


def is_checkpoint_config(path: Path) -> bool:
    """True when `path` is a bilstm checkpoint's config.json (a JSON object with our keys)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(doc, dict) and "format_version" in doc and "task" in doc and "model" in doc


def save_checkpoint(
    ckpt: Checkpoint,
    directory: Path,
    weights: dict[str, torch.Tensor] | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> None:
    """Write `ckpt` to `directory`, touching no file but the checkpoint's own (`OWN_FILES`).

    `weights` overrides the model's own state (the best epoch's, while training goes on);
    `trainer_state` is what `--resume` needs to continue training.

    Every file is first written completely into a temporary folder. A new checkpoint folder
    is then renamed into place in one step. An existing one is updated file by file with
    `os.replace` (each file is swapped atomically) and config.json last, because replacing
    the folder itself would delete whatever else a user keeps in it (once, the training
    data). When the new config differs from the old one (e.g. `--force` onto another run)
    the old config.json is removed first, so that during the swap the folder is not a
    loadable mix of two runs; an epoch's save keeps the same config, so a checkpoint read
    while training goes on stays loadable throughout.
    """
    directory = Path(directory)
    existing = directory.is_dir()
    # The temporary folder is beside a new checkpoint (renamed into place whole) and inside
    # an existing one (same file system for os.replace; its parent may not be writable).
    where = directory if existing else directory.resolve().parent
    where.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.resolve().name}.save-", dir=where))
    umask = os.umask(0)
    os.umask(umask)
    try:
        config = {
            "format_version": FORMAT_VERSION,
            "task": ckpt.task,
            "labels": ckpt.labels,
            "tokenizer": ckpt.tokenizer.to_dict() if ckpt.tokenizer else None,
            "task_config": ckpt.task_config,
            "model": ckpt.model_config.to_dict(),
            "train": ckpt.train_config.to_dict(),
        }
        _write_json(tmp / CONFIG, config)
        if ckpt.vocabulary is not None:
            _write_json(tmp / VOCAB, ckpt.vocabulary.tokens)
        _write_json(tmp / SUMMARY, ckpt.summary)
        _write_json(tmp / EXAMPLES, ckpt.examples)
        with (tmp / HISTORY).open("w", encoding="utf-8") as fh:
            for row in ckpt.history:
                fh.write(json.dumps(row) + "\n")
        source = weights if weights is not None else ckpt.model.state_dict()
        state = {k: v.detach().cpu().contiguous() for k, v in source.items()}
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_STATE)
        save_file(state, str(tmp / WEIGHTS), metadata={"format_version": str(FORMAT_VERSION)})
        # safetensors creates its file 0600; every file gets the usual 0666 & ~umask, and
        # the folder (private from mkdtemp) 0777 & ~umask: a checkpoint is an ordinary folder.
        for path in tmp.iterdir():
            path.chmod(0o666 & ~umask)
        tmp.chmod(0o777 & ~umask)
        if not existing:
            os.replace(tmp, directory)
            return
        written = [name for name in OWN_FILES if (tmp / name).is_file()]
        old_config = directory / CONFIG
        if old_config.is_file() and old_config.read_bytes() != (tmp / CONFIG).read_bytes():
            old_config.unlink()
        for name in written:
            if name != CONFIG:
                os.replace(tmp / name, directory / name)
        for name in OWN_FILES:  # files of the old checkpoint that this one does not have
            if name not in written and (directory / name).is_file():
                (directory / name).unlink()
        os.replace(tmp / CONFIG, directory / CONFIG)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: not a bilstm checkpoint (no {path.name})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc


def load_checkpoint(directory: Path) -> Checkpoint:
    """Load a checkpoint folder. Only JSON and safetensors are read: nothing is unpickled."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(
            f"{directory}: not a checkpoint folder (expected the --out folder of `bilstm train`)"
        )
    config = _read_json(directory / CONFIG)
    if not isinstance(config, dict):
        raise CheckpointError(f"{directory / CONFIG}: expected a JSON object")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory / CONFIG}: checkpoint format_version is {version!r}, this bilstm reads "
            f"{FORMAT_VERSION}; upgrade bilstm to load it"
        )
    try:
        model_cfg = ModelConfig.from_dict(config["model"])
        train_cfg = TrainConfig.from_dict(config["train"])
        text = config.get("tokenizer") is not None
        tokenizer = TokenizerConfig.from_dict(config["tokenizer"]) if text else None
        labels = [str(x) for x in config["labels"]]
        vocab = Vocabulary(_read_json(directory / VOCAB)) if text else None
        task_config = dict(config.get("task_config") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{directory / CONFIG}: malformed checkpoint config ({exc!r})"
        ) from exc
    if vocab is not None and len(vocab) != model_cfg.vocab_size:
        raise CheckpointError(
            f"{directory}: vocab.json has {len(vocab)} tokens but the model expects "
            f"{model_cfg.vocab_size}"
        )
    if TASKS[model_cfg.task].labelled and len(labels) != model_cfg.num_labels:
        raise CheckpointError(
            f"{directory}: config has {len(labels)} labels but the model outputs "
            f"{model_cfg.num_labels}"
        )
    model = build_model(model_cfg)
    try:
        state = load_file(str(directory / WEIGHTS))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{directory / WEIGHTS}: cannot read weights ({exc})") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{directory / WEIGHTS}: weights do not fit the config ({exc})"
        ) from exc
    model.eval()
    history = _read_history(directory / HISTORY)
    summary = _read_json(directory / SUMMARY) if (directory / SUMMARY).is_file() else {}
    examples = _read_json(directory / EXAMPLES) if (directory / EXAMPLES).is_file() else []
    return Checkpoint(
        model=model,
        model_config=model_cfg,
        train_config=train_cfg,
        tokenizer=tokenizer,
        vocabulary=vocab,
        labels=labels,
        task_config=task_config,
        history=history,
        summary=summary,
        examples=list(examples),
    )


def _read_history(path: Path) -> list[dict[str, Any]]:
    """The per-epoch metrics; a line that is not a JSON object is skipped with a warning.

    history.jsonl is informational (what was printed during training): nothing loads,
    exports, evaluates or resumes from it (`--resume` uses trainer_state.pt), so a damaged
    line must not make a good model unusable. The warning names file:line and the fix.
    """
    if not path.is_file():
        return []
    history: list[dict[str, Any]] = []
    raw = path.read_bytes()
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            row, reason = None, str(exc)
        else:
            reason = "not a JSON object"
        if not isinstance(row, dict):
            log.warning(
                "%s:%d: skipped a damaged history line (%s); the model is unaffected. "
                "history.jsonl only records per-epoch metrics: delete the file or the line "
                "to silence this",
                path,
                number,
                reason,
            )
            continue
        history.append(row)
    return history


def load_trainer_state(directory: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint (weights_only: no code runs on load)."""
    path = Path(directory) / TRAINER_STATE
    if not path.is_file():
        raise CheckpointError(f"{directory}: has no {TRAINER_STATE}; it cannot be resumed")
    try:
        state: dict[str, Any] = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError for unsafe or bad files
        raise CheckpointError(f"{path}: cannot load the trainer state ({exc})") from exc
    return state


def predict_logits(model: torch.nn.Module, ids: Any, lengths: Any, *extra: Any) -> torch.Tensor:
    """Eval-mode outputs for numpy or torch inputs (no gradients), e.g. logits of a classifier."""
    model.eval()
    with torch.inference_mode():
        return model(
            torch.as_tensor(ids), torch.as_tensor(lengths), *(torch.as_tensor(e) for e in extra)
        )
