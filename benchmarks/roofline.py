"""The physics limit of a throughput row: this machine's fp32 GEMM peak over the model's FLOPs.

    python -m benchmarks.roofline [--threads 2] [--model sentiment] [--data dev.tsv]

Peak: the best of many `n x n x n` fp32 matrix products (default 2048, 10 each) through ONNX
Runtime's MLAS (an ORT session holding one `MatMul`, `intra_op_num_threads` = the benchmark's
thread count): the GEMM the runtime's LSTM kernel is built on. numpy's BLAS is timed beside
it for reference (only when the thread count equals the core count, since numpy uses every
core).

FLOPs per item count the matrix products only, multiply and add as two FLOPs:

    per token  = sum over layers l of  2 directions x 2 x G*H x (I_l + H)
    per item   = tokens_avg x per token  +  2 x D x C

with G gates (LSTM 4, GRU 3), H the hidden size per direction, I_l the layer's input width
(embedding size (+ character features) for the first layer, then the merged output width:
2H for `concat`, H otherwise), D the pooled width and C the classes; tokens_avg is the mean
token count of the data after the model's tokenizer and length limit. Gate nonlinearities,
the embedding lookup and pooling are O(H) per token (under 2% here) and not counted.

The limit in items/s is peak / FLOPs per item; a row's share is its items/s over that. int8
rows use the fp32 limit too, so they can exceed 100% (VNNI integer products are not fp32
FLOPs).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "roofline"
GATES = {"lstm": 4, "gru": 3}


def ort_matmul_session(n: int, threads: int) -> Any:
    """An ONNX Runtime CPU session with one n x n fp32 MatMul."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])],
        "gemm",
        [
            helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n]),
            helper.make_tensor_value_info("B", TensorProto.FLOAT, [n, n]),
        ],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = Path(tempfile.mkdtemp(prefix="bilstm-bench-")) / "gemm.onnx"
    onnx.save_model(model, str(path))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def gemm_peak(threads: int, n: int = 2048, reps: int = 10) -> dict[str, Any]:
    """Best fp32 GFLOP/s of an n^3 matrix product: ONNX Runtime (MLAS) and numpy, interleaved.

    `peak_gflops` is ONNX Runtime's: the engine every runtime row runs on. The best of many
    short products (2048^3 is 17 GFLOP, well past MLAS's blocking sizes) rather than a few
    long ones: on a shared machine a long product always shares the core with someone, so
    its time measures the load, not the hardware.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    sess = ort_matmul_session(n, threads)
    cases: dict[str, Callable[[], Any]] = {
        "onnxruntime_mlas": lambda: sess.run(None, {"A": a, "B": b}),
    }
    if threads == (os.cpu_count() or threads):  # numpy's BLAS uses every core
        cases["numpy"] = lambda: a @ b
    for fn in cases.values():
        fn()
    times = c.interleave(cases, reps)
    flops = 2.0 * n**3
    gflops = {name: flops / min(xs) / 1e9 for name, xs in times.items()}
    return {
        "n": n,
        "threads": threads,
        "reps": reps,
        "gflops": gflops,
        "peak_gflops": gflops["onnxruntime_mlas"],
        "peak_by": "onnxruntime_mlas",
        "numpy_note": None if "numpy" in cases else "numpy skipped: its BLAS uses every core",
    }


def flops_per_token(model: dict[str, Any]) -> float:
    """Matrix-product FLOPs per token of the recurrent stack (see the module docstring)."""
    hidden = int(model["hidden_size"])
    gates = GATES[str(model.get("cell", "lstm"))]
    proj = int(model.get("proj_size") or 0)
    direction = proj or hidden
    merged = 2 * direction if model.get("merge", "concat") == "concat" else direction
    first = int(model.get("embedding_dim", 0) or model.get("num_features", 0))
    if int(model.get("char_vocab_size") or 0):
        first += int(model.get("char_filters", 0))
    total = 0.0
    for layer in range(int(model["num_layers"])):
        width = first if layer == 0 else merged
        per_dir = 2 * gates * hidden * (width + direction)
        if proj:
            per_dir += 2 * hidden * proj  # the projection of each step's output
        total += 2 * per_dir
    return total


def flops_per_item(model: dict[str, Any], tokens_avg: float) -> dict[str, float]:
    """FLOPs per item of a classifier: recurrent stack over the average length, plus the head."""
    direction = int(model.get("proj_size") or 0) or int(model["hidden_size"])
    pooled = 2 * direction if model.get("merge", "concat") == "concat" else direction
    per_token = flops_per_token(model)
    head = 2.0 * pooled * int(model["num_labels"])
    return {
        "tokens_avg": tokens_avg,
        "flops_per_token": per_token,
        "head_flops": head,
        "flops_per_item": tokens_avg * per_token + head,
    }


def model_profile(model_path: str | Path, texts: Sequence[str]) -> dict[str, Any]:
    """Dimensions, average tokens on `texts` and FLOPs per item of a bilstm model."""
    from bilstm.runtime import BiLSTM

    m = BiLSTM.load(model_path, device="cpu", threads=1)
    encoded = [e for e in m.encode(list(texts)) if e]
    tokens_avg = sum(len(e) for e in encoded) / max(1, len(encoded))
    dims = dict(m.metadata.model)
    return {
        "model": str(model_path),
        "precision": m.metadata.export.get("precision", "fp32"),
        "dims": {
            k: dims.get(k)
            for k in (
                "embedding_dim",
                "hidden_size",
                "num_layers",
                "cell",
                "merge",
                "pooling",
                "num_labels",
                "vocab_size",
            )
        },
        "items": len(encoded),
        **flops_per_item(dims, tokens_avg),
    }


def limit_items_per_s(peak_gflops: float, flops_item: float) -> float:
    """Items/s a model could reach if every FLOP ran at the GEMM peak."""
    return peak_gflops * 1e9 / flops_item


def share(items_per_s: float | None, peak_gflops: float, flops_item: float) -> float | None:
    """A row's items/s as a fraction of its roofline."""
    if items_per_s is None:
        return None
    return items_per_s / limit_items_per_s(peak_gflops, flops_item)


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, (__doc__ or "").splitlines()[0])
    c.add_asset_options(p)
    p.add_argument("--gemm-n", type=int, default=2048)
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args(argv)
    if args.smoke:
        args.gemm_n, args.reps = 256, 1
    machine = c.machine_info(args.wait_quiet)
    model = args.model or c.SHIPPED_MODEL
    data = args.data or c.SHARED_DEV
    texts = [t for _, t in c.read_tsv(Path(data))]
    start = time.perf_counter()
    peak = gemm_peak(args.threads, args.gemm_n, args.reps)
    profile = model_profile(model, texts)
    limit = limit_items_per_s(peak["peak_gflops"], profile["flops_per_item"])
    print(
        f"GEMM peak {peak['peak_gflops']:.1f} GFLOP/s (ORT MLAS, {args.threads} threads); "
        f"{profile['flops_per_item'] / 1e6:.2f} MFLOP per item -> {limit:,.0f} items/s "
        f"({time.perf_counter() - start:.1f} s)",
        file=sys.stderr,
    )
    c.save(
        NAME,
        args,
        argv,
        {"gemm": peak, "profile": profile, "limit_items_per_s": limit},
        machine,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())


def best_of(*peaks: dict[str, Any]) -> dict[str, Any]:
    """Several `gemm_peak` results (e.g. at the start and end of a run) folded into the best."""
    first = dict(peaks[0])
    gflops = {k: max(p["gflops"].get(k, 0.0) for p in peaks) for k in first["gflops"]}
    first.update(
        gflops=gflops,
        peak_gflops=gflops["onnxruntime_mlas"],
        reps=sum(p["reps"] for p in peaks),
        measured=[p["gflops"] for p in peaks],
    )
    return first
