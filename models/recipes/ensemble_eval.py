"""Accuracy of classify checkpoints, alone and as an ensemble (mean of their probabilities).

    python models/recipes/ensemble_eval.py DATA.tsv CKPT [CKPT ...] [--json]

Scores each checkpoint on DATA (a `label<TAB>text` TSV or JSONL, as `bilstm train` reads),
then the ensemble: the arithmetic mean of the members' softmax probabilities, argmax. This is
the average that `bilstm train classify --teacher A --teacher B ...` distils (at temperature
T instead of 1). Each checkpoint reads the texts with its own tokenizer and vocabulary; all
must have the same labels. Use it on a hold-out split (split_tsv.py) to choose, and on dev
only to report. Prints a table (or one JSON object with --json) on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from bilstm.core.datasets import read_classification
from bilstm.core.errors import BiLSTMError
from bilstm.core.metrics import classification_metrics
from bilstm.models.checkpoint import load_checkpoint
from bilstm.models.classify import Distillation, teacher_logits


def score(data: Path, checkpoints: list[Path], batch_size: int = 128) -> dict[str, object]:
    """Accuracy and macro-F1 of each checkpoint and of their probability average on `data`."""
    items = read_classification(data)
    labels = load_checkpoint(checkpoints[0]).labels
    for path in checkpoints[1:]:
        theirs = load_checkpoint(path).labels
        if sorted(theirs) != sorted(labels):
            raise BiLSTMError(
                f"{path}: labels {theirs} differ from those of {checkpoints[0]} ({labels}); "
                "an ensemble averages models of the same labels"
            )
    index = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted({it.label for it in items} - set(labels))
    if unknown:
        raise BiLSTMError(f"{data}: labels {unknown} are not among the models' labels {labels}")
    gold = [index[it.label] for it in items]
    texts = [it.text for it in items]
    # teacher_logits refuses a checkpoint that is not a classifier (naming it) and orders
    # every model's columns as `labels`.
    logits = teacher_logits(Distillation(tuple(checkpoints)), labels, texts, batch_size)
    probs = torch.softmax(logits, dim=-1)  # [models, texts, labels]

    def metrics(p: torch.Tensor) -> dict[str, float]:
        m = classification_metrics(gold, p.argmax(-1).tolist(), labels)
        return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}

    members = [{"checkpoint": str(path), **metrics(probs[i])} for i, path in enumerate(checkpoints)]
    accs = [float(m["accuracy"]) for m in members]
    return {
        "data": str(data),
        "examples": len(items),
        "members": members,
        "member_mean_accuracy": round(sum(accs) / len(accs), 4),
        "ensemble": metrics(probs.mean(0)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        result = score(args.data, args.checkpoints, args.batch_size)
    except BiLSTMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
        return 0
    members = result["members"]
    assert isinstance(members, list)
    print(f"{'model':<40} accuracy macro-F1   ({result['examples']} examples of {args.data})")
    for m in members:
        print(f"{m['checkpoint']:<40} {m['accuracy']:.4f}   {m['macro_f1']:.4f}")
    ens = result["ensemble"]
    assert isinstance(ens, dict)
    print(f"{'mean of the members':<40} {result['member_mean_accuracy']:.4f}")
    print(f"{f'ensemble of {len(members)} (mean probability)':<40} "
          f"{ens['accuracy']:.4f}   {ens['macro_f1']:.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
