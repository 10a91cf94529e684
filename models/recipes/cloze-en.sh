#!/usr/bin/env bash
# Rebuilds the built-in `cloze-en` fill-in-the-blank model from the text of the rt_sentiment
# and UD English EWT training splits (dev: their dev splits).
# Usage: models/recipes/cloze-en.sh DATA_DIR [OUT_DIR]
set -euo pipefail
# --force: a rerun replaces this recipe's own earlier checkpoint and model.
data=${1:?usage: cloze-en.sh DATA_DIR [OUT_DIR]}
out=${2:-runs}
mkdir -p "$out"
for split in train dev; do
  { tail -n +2 "$data/rt_sentiment/$split.tsv" | cut -f2
    sed -n 's/^# text = //p' "$data/ud_en_ewt/$split.conllu"; } > "$out/cloze-$split.txt"
done
bilstm train cloze \
  --data "$out/cloze-train.txt" --dev "$out/cloze-dev.txt" --out "$out/cloze-en" --force \
  --embedding-dim 128 --hidden-size 160 --layers 1 --dropout 0.3 --embedding-dropout 0.1 \
  --min-freq 3 --max-length 64 --epochs 15 --patience 2 --batch-size 64 --lr 0.003 --seed 13 \
  --threads 1
bilstm export "$out/cloze-en" "$out/cloze-en-fp32.onnx" --force
bilstm eval "$out/cloze-en-fp32.onnx" "$out/cloze-dev.txt" --threads 1
# The shipped cloze-en.onnx is the int8 variant (4x smaller, same accuracy: see the card).
bilstm export "$out/cloze-en" "$out/cloze-en.onnx" --quantize int8 --force
bilstm eval "$out/cloze-en.onnx" "$out/cloze-dev.txt" --threads 1
