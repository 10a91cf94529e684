#!/usr/bin/env bash
# Rebuilds the built-in `sentiment` model from the Rotten Tomatoes snippets.
# Usage: models/recipes/sentiment.sh DATA_DIR [OUT_DIR]   (DATA_DIR holds rt_sentiment/)
# Measured: about 65 s of training on a 2-core CPU machine (9 epochs, early stop at 6).
set -euo pipefail
# --force: a rerun replaces this recipe's own earlier checkpoint and model.
data=${1:?usage: sentiment.sh DATA_DIR [OUT_DIR]}
out=${2:-runs}
bilstm train classify \
  --data "$data/rt_sentiment/train.tsv" --dev "$data/rt_sentiment/dev.tsv" \
  --out "$out/sentiment" --force --min-freq 2 --epochs 15 --dropout 0.5 --embedding-dropout 0.2 \
  --seed 13 --threads 1
bilstm export "$out/sentiment" "$out/sentiment.onnx" --force
bilstm eval "$out/sentiment.onnx" "$data/rt_sentiment/dev.tsv"
