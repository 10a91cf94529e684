#!/usr/bin/env bash
# Rebuilds the built-in `elecdemand` forecaster (half-hourly Victoria demand, window 48 x 3).
# Usage: models/recipes/elecdemand.sh DATA_DIR [OUT_DIR]   (DATA_DIR holds elecdemand/)
set -euo pipefail
# --force: a rerun replaces this recipe's own earlier checkpoint and model.
data=${1:?usage: elecdemand.sh DATA_DIR [OUT_DIR]}
out=${2:-runs}
for h in 1 48; do
  bilstm train forecast \
    --data "$data/elecdemand/train.csv" --dev "$data/elecdemand/dev.csv" \
    --out "$out/elecdemand-h$h" --force --target Demand --features WorkDay,Temperature \
    --window 48 --horizon "$h" --season 48 --hidden-size 64 --layers 1 --dropout 0.1 \
    --epochs 30 --patience 5 --batch-size 64 --lr 0.003 --seed 13
  bilstm export "$out/elecdemand-h$h" "$out/elecdemand-h$h.onnx" --force
  bilstm eval "$out/elecdemand-h$h.onnx" "$data/elecdemand/dev.csv"
done
