"""Seeded, label-stratified splits of a `label<TAB>text` TSV for model selection on train only.

    python models/recipes/split_tsv.py TRAIN.tsv OUT_DIR --folds 3     # fold{k}/{train,dev}.tsv
    python models/recipes/split_tsv.py TRAIN.tsv OUT_DIR --holdout 0.1 # {fit,val}.tsv

The official dev set is never read: folds and the hold-out come from the training file alone,
so the dev figure reported for the chosen model is untouched by the choice.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from pathlib import Path


def read_rows(path: Path) -> tuple[str | None, list[str]]:
    """The header line (if the file has `label<TAB>text` first) and the data lines."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    header = lines[0] if lines and lines[0].split("\t")[:2] == ["label", "text"] else None
    return header, lines[1:] if header else lines


def stratified_order(rows: list[str], seed: int) -> list[str]:
    """Rows shuffled within each label and interleaved, so every slice keeps the label mix."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_label[row.split("\t", 1)[0]].append(row)
    rng = random.Random(seed)
    keyed = []
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        keyed += [((i + 0.5) / len(group), label, row) for i, row in enumerate(group)]
    return [row for _, _, row in sorted(keyed)]


def write(path: Path, header: str | None, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{r}\n" for r in ([header] if header else []) + rows), "utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--folds", type=int, default=0)
    parser.add_argument("--holdout", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    if (args.folds >= 2) == (0 < args.holdout < 1):
        parser.error("give exactly one of --folds K (K >= 2) or --holdout FRACTION (0..1)")
    header, rows = read_rows(args.data)
    order = stratified_order(rows, args.seed)
    if args.folds:
        for k in range(args.folds):
            write(args.out / f"fold{k}" / "dev.tsv", header, order[k :: args.folds])
            rest = [r for i, r in enumerate(order) if i % args.folds != k]
            write(args.out / f"fold{k}" / "train.tsv", header, rest)
        print(f"{len(rows)} rows -> {args.folds} folds in {args.out}", file=sys.stderr)
    else:
        every = round(1 / args.holdout)
        write(args.out / "val.tsv", header, order[::every])
        write(args.out / "fit.tsv", header, [r for i, r in enumerate(order) if i % every])
        print(f"{len(rows)} rows -> fit/val (1 in {every}) in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
