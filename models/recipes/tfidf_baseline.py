"""TF-IDF + logistic regression on the sentiment data: the bar a shipped BiLSTM must clear.

    python models/recipes/tfidf_baseline.py DATA_DIR [--folds 3] [--holdout SPLIT_DIR]

Needs scikit-learn (`pip install scikit-learn`; not a bilstm dependency). DATA_DIR holds
rt_sentiment/{train,dev}.tsv (see sentiment.sh for the source). The n-gram range and the
regularisation C are chosen by K-fold cross-validation on train only (the folds of
split_tsv.py); the chosen pipeline is refitted on all of train and scored once on dev.
Prints one JSON line on stdout: CV accuracy of each candidate, the choice, dev accuracy and
macro-F1. With --holdout SPLIT_DIR (the fit.tsv/val.tsv of `split_tsv.py TRAIN --holdout`),
the chosen pipeline is also fitted on fit.tsv and scored on val.tsv: the baseline on the
hold-out that the BiLSTM recipes select on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.pipeline import make_pipeline
from split_tsv import read_rows, stratified_order


def labelled(rows: list[str]) -> tuple[list[str], list[str]]:
    pairs = [row.split("\t", 1) for row in rows]
    return [p[1] for p in pairs], [p[0] for p in pairs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--holdout", type=Path, help="split_tsv.py --holdout folder")
    args = parser.parse_args(argv)
    _, train_rows = read_rows(args.data_dir / "rt_sentiment" / "train.tsv")
    _, dev_rows = read_rows(args.data_dir / "rt_sentiment" / "dev.tsv")
    # The same folds as sentiment_cv.py: row i of the stratified order is in fold i % K.
    order = stratified_order(train_rows, args.seed)
    x_train, y_train = labelled(order)
    fold_of = [i % args.folds for i in range(len(order))]
    pipeline = make_pipeline(
        TfidfVectorizer(lowercase=True, sublinear_tf=True, min_df=1),
        LogisticRegression(max_iter=2000),
    )
    grid = GridSearchCV(
        pipeline,
        {
            "tfidfvectorizer__ngram_range": [(1, 1), (1, 2), (1, 3)],
            "logisticregression__C": [1.0, 3.0, 10.0, 30.0],
        },
        cv=PredefinedSplit(fold_of),
        scoring="accuracy",
        n_jobs=1,
    )
    grid.fit(x_train, y_train)
    x_dev, y_dev = labelled(dev_rows)
    pred = grid.predict(x_dev)
    results = grid.cv_results_
    holdout = {}
    if args.holdout is not None:
        x_fit, y_fit = labelled(read_rows(args.holdout / "fit.tsv")[1])
        x_val, y_val = labelled(read_rows(args.holdout / "val.tsv")[1])
        fitted = clone(grid.best_estimator_).fit(x_fit, y_fit)
        val_pred = fitted.predict(x_val)
        holdout = {
            "holdout_accuracy": round(accuracy_score(y_val, val_pred), 4),
            "holdout_macro_f1": round(f1_score(y_val, val_pred, average="macro"), 4),
            "holdout_fit": len(x_fit),
            "holdout_val": len(x_val),
        }
    cv = {
        f"ngram={p['tfidfvectorizer__ngram_range']} C={p['logisticregression__C']}": round(s, 4)
        for p, s in zip(results["params"], results["mean_test_score"], strict=True)
    }
    print(
        json.dumps(
            {
                "cv_accuracy": cv,
                "chosen": {k.split("__")[1]: v for k, v in grid.best_params_.items()},
                "chosen_cv_accuracy": round(grid.best_score_, 4),
                "dev_accuracy": round(accuracy_score(y_dev, pred), 4),
                "dev_macro_f1": round(f1_score(y_dev, pred, average="macro"), 4),
                "train": len(order),
                "dev": len(dev_rows),
                **holdout,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
