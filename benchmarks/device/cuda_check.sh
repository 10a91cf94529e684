#!/usr/bin/env bash
# CUDA tests and the GPU benchmark in one go, on an offline machine with a CUDA GPU and
# torch (CUDA build) in `python3`'s environment.
#
#   benchmarks/device/cuda_check.sh OUTDIR [ORT_GPU_ARCHIVE] [ASSETS]
#
# ORT_GPU_ARCHIVE: the onnxruntime-gpu wheel's files as a .tar.xz (the wheel unpacked, its
# TensorRT provider left out); it replaces the CPU onnxruntime in that environment, as
# `pip uninstall -y onnxruntime && pip install onnxruntime-gpu` would. ASSETS: a folder with
# checkpoints sentiment, pos-en, cloze-en, elecdemand-h1 (no trainer_state.pt needed) and
# dev.tsv (rt_sentiment dev). Each step logs to OUTDIR; a failing step does not stop the rest.
set -u
out=${1:?usage: cuda_check.sh OUTDIR [ORT_GPU_ARCHIVE] [ASSETS]}
archive=${2:-}
assets=${3:-}
py=${PYTHON:-python3}
mkdir -p "$out"
step() { echo "== $*" >&2; }

if [ -n "$archive" ]; then
    step "install onnxruntime-gpu from $archive"
    site=$($py -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    $py -m pip uninstall -y -q onnxruntime
    if command -v xz >/dev/null; then
        xz -dc -T0 "$archive" | tar -x -C "$site"
    else
        $py -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' \
            "$archive" "$site"
    fi
fi
step "install bilstm"
$py -m pip install -q --no-deps --no-build-isolation --no-index . 2>&1 | tail -3
nvidia-smi >"$out/nvidia-smi.txt" 2>&1
$py - <<'PY' 2>&1 | tee "$out/providers.txt"
import importlib.metadata as im
import onnxruntime as ort
import torch
print("onnxruntime", ort.__version__, ort.get_available_providers())
for dist in ("onnxruntime", "onnxruntime-gpu", "torch"):
    try:
        print(dist, im.version(dist))
    except im.PackageNotFoundError:
        print(dist, "not installed")
print("torch", torch.__version__, torch.cuda.get_device_name(0), "cudnn", torch.backends.cudnn.version())
PY

step "CUDA tests"
PYTHONUNBUFFERED=1 timeout 240 $py -m pytest -m cuda -v -s -p no:cacheprovider tests \
    >"$out/pytest-cuda.log" 2>&1
echo "pytest -m cuda exit $?" | tee -a "$out/pytest-cuda.log"
tail -15 "$out/pytest-cuda.log"

step "GPU benchmark"
bench=(--out "$out/gpu.json" --rounds 3 --budget 0.2 --repeat 10)
if [ -n "$assets" ]; then
    bench+=(--checkpoint "$assets/sentiment" --data "$assets/dev.tsv" --parity)
    for name in sentiment pos-en cloze-en elecdemand-h1; do
        [ -d "$assets/$name" ] && bench+=("$assets/$name")
    done
fi
PYTHONUNBUFFERED=1 timeout 300 $py -m benchmarks.gpu "${bench[@]}" >"$out/gpu.log" 2>&1
echo "benchmarks.gpu exit $?" | tee -a "$out/gpu.log"
tail -5 "$out/gpu.log"

step "whole test suite with onnxruntime-gpu installed"
timeout 150 $py -m pytest -q -n 8 -p no:cacheprovider tests >"$out/pytest-all.log" 2>&1
echo "pytest exit $?" | tee -a "$out/pytest-all.log"
tail -8 "$out/pytest-all.log"
