"""Workload 4: raw kernel efficiency of a 2-layer BiLSTM (input 300, hidden 256).

One `torch.nn.LSTM(300, 256, num_layers=2, bidirectional=True)` with fixed random weights; the
same weights written as an ONNX graph of two fused bidirectional `LSTM` nodes fed
`sequence_lens` (as `bilstm export` writes them). For batch 1/32/128 and length 50/200 (all
sequences full length) it times, interleaved in one process with the same thread count:

- ORT fp32: ONNX Runtime CPU, the graph as exported;
- ORT int8: the graph after `onnxruntime.quantization.quantize_dynamic` (DynamicQuantizeLSTM);
- PyTorch eager: `nn.LSTM` under `inference_mode`;
- OpenVINO fp32: the same ONNX file through OpenVINO's CPU plugin (skipped when not installed).

GFLOP/s counts the matrix products only: 2 * 4H * (in + H) multiply-adds per direction, layer,
time step and sequence. The machine's fp32 peak is measured in the same run as ONNX Runtime's
(MLAS) large square GEMM at the same thread count, numpy's beside it
(`benchmarks/roofline.py`).

    python -m benchmarks.kernels --threads 2
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c
from benchmarks import roofline

NAME = "kernels"
GATE_ORDER = [0, 3, 1, 2]  # PyTorch (i, f, g, o) -> ONNX (i, o, f, c)


def lstm_flops(batch: int, length: int, input_size: int, hidden: int, layers: int) -> float:
    """Multiply-add FLOPs of the gate matrix products of a stacked bidirectional LSTM."""
    sizes = [input_size] + [2 * hidden] * (layers - 1)
    per_token = sum(2 * 2 * 4 * hidden * (size + hidden) for size in sizes)
    return float(per_token * batch * length)


def build_onnx(lstm: Any, path: Path, input_size: int, hidden: int, layers: int) -> Path:
    """The torch LSTM's weights as fused bidirectional ONNX LSTM nodes with sequence_lens."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def gates(w: Any) -> Any:
        blocks = np.split(w.detach().numpy().astype(np.float32), 4, axis=0)
        return np.concatenate([blocks[i] for i in GATE_ORDER], axis=0)

    state = dict(lstm.named_parameters())
    nodes, inits = [], []
    x = "X"
    for layer in range(layers):
        ws, rs, bs = [], [], []
        for sfx in (f"_l{layer}", f"_l{layer}_reverse"):
            ws.append(gates(state[f"weight_ih{sfx}"]))
            rs.append(gates(state[f"weight_hh{sfx}"]))
            bs.append(
                np.concatenate([gates(state[f"bias_ih{sfx}"]), gates(state[f"bias_hh{sfx}"])])
            )
        for name, arr in ((f"W{layer}", ws), (f"R{layer}", rs), (f"B{layer}", bs)):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(np.stack(arr)), name))
        y = f"Y{layer}"
        nodes.append(
            helper.make_node(
                "LSTM",
                [x, f"W{layer}", f"R{layer}", f"B{layer}", "seq_lens"],
                [y],
                direction="bidirectional",
                hidden_size=hidden,
                layout=0,
                name=f"lstm{layer}",
            )
        )
        nodes.append(helper.make_node("Transpose", [y], [f"{y}t"], perm=[0, 2, 1, 3]))
        x = "Y" if layer == layers - 1 else f"H{layer}"
        nodes.append(helper.make_node("Reshape", [f"{y}t", "shape3"], [x]))
    inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), "shape3"))
    graph = helper.make_graph(
        nodes,
        "bilstm_kernel",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, ["time", "batch", input_size]),
            helper.make_tensor_value_info("seq_lens", TensorProto.INT32, ["batch"]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["time", "batch", 2 * hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def quantize(fp32: Path, int8: Path) -> Path:
    """Dynamic int8 quantisation; fails unless the LSTMs became DynamicQuantizeLSTM."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    if "DynamicQuantizeLSTM" not in ops:
        raise RuntimeError(f"quantize_dynamic left the LSTM in fp32 (ops: {sorted(ops)})")
    return int8


def ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def openvino_model(path: Path, threads: int) -> tuple[Any, str | None]:
    """(compiled OpenVINO model or None, why it is missing)."""
    try:
        import openvino as ov
    except ImportError:
        return None, "openvino is not installed (pip install openvino)"
    try:
        core = ov.Core()
        compiled = core.compile_model(
            str(path),
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads,
                "INFERENCE_PRECISION_HINT": "f32",
                "PERFORMANCE_HINT": "LATENCY",
            },
        )
        return compiled, None
    except Exception as exc:  # noqa: BLE001 - any failure means "OpenVINO cannot run this"
        return None, f"OpenVINO cannot compile the model: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    p.add_argument("--input-size", type=int, default=300)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batches", default="1,32,128")
    p.add_argument("--lengths", default="50,200")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--budget", type=float, default=0.3, help="seconds per timed measurement")
    p.add_argument("--gemm-n", type=int, default=2048)
    p.add_argument("--no-openvino", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.input_size, args.hidden, args.batches, args.lengths = 8, 16, "1,4", "5"
        args.rounds, args.budget, args.gemm_n = 1, 0.005, 128
    machine = c.machine_info(args.wait_quiet)

    import numpy as np
    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bilstm-bench-"))
    lstm = torch.nn.LSTM(
        args.input_size, args.hidden, num_layers=args.layers, bidirectional=True
    ).eval()
    fp32 = build_onnx(lstm, work / "bilstm_fp32.onnx", args.input_size, args.hidden, args.layers)
    int8 = quantize(fp32, work / "bilstm_int8.onnx")
    sessions = {
        "ort_fp32": ort_session(fp32, args.threads),
        "ort_int8": ort_session(int8, args.threads),
    }
    ov_model, ov_missing = (
        (None, "--no-openvino") if args.no_openvino else openvino_model(fp32, args.threads)
    )

    peak = roofline.gemm_peak(args.threads, args.gemm_n, 10 if not args.smoke else 1)
    print(f"fp32 GEMM peak {peak['peak_gflops']:.1f} GFLOP/s ({peak['peak_by']})", file=sys.stderr)
    rng = np.random.default_rng(1)
    configs = []
    for length in [int(x) for x in args.lengths.split(",")]:
        for batch in [int(x) for x in args.batches.split(",")]:
            x = rng.standard_normal((length, batch, args.input_size), dtype=np.float32)
            lens = np.full(batch, length, dtype=np.int32)
            tx = torch.from_numpy(x)
            feeds = {"X": x, "seq_lens": lens}
            engines: dict[str, Callable[[], Any]] = {
                name: (lambda s=s, feeds=feeds: s.run(None, feeds)[0])
                for name, s in sessions.items()
            }

            def torch_run(tx: Any = tx) -> Any:
                with torch.inference_mode():
                    return lstm(tx)[0]

            engines["torch_eager"] = torch_run
            if ov_model is not None:
                request = ov_model.create_infer_request()
                engines["openvino_fp32"] = lambda request=request, feeds=feeds: request.infer(
                    feeds
                )[ov_model.output(0)]
            reference = torch_run().numpy()
            diffs = {
                name: float(np.abs(np.asarray(fn()) - reference).max())
                for name, fn in engines.items()
            }
            times = c.interleave(
                {
                    name: (lambda fn=fn: c.per_call_seconds(fn, args.budget))
                    for name, fn in engines.items()
                },
                args.rounds,
                self_timed=True,
            )
            flops = lstm_flops(batch, length, args.input_size, args.hidden, args.layers)
            rows = {}
            for name, xs in times.items():
                sec = c.median(xs)
                rows[name] = {
                    "ms": sec * 1e3,
                    "gflops": flops / sec / 1e9,
                    "fraction_of_peak": flops / sec / 1e9 / peak["peak_gflops"],
                    "max_abs_diff_vs_torch": diffs[name],
                    "runs": len(xs),
                }
            base = rows["torch_eager"]["ms"]
            for row in rows.values():
                row["speedup_vs_torch"] = base / row["ms"]
            configs.append(
                {"batch": batch, "length": length, "gflop": flops / 1e9, "engines": rows}
            )
            print(
                f"b={batch} t={length}: "
                + ", ".join(f"{k} {v['ms']:.2f} ms" for k, v in rows.items()),
                file=sys.stderr,
            )
    c.save(
        NAME,
        args,
        argv,
        {
            "model": {
                "input_size": args.input_size,
                "hidden": args.hidden,
                "layers": args.layers,
                "bidirectional": True,
            },
            "files_bytes": {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size},
            "onnxruntime": ort.__version__,
            "openvino_skipped": ov_missing,
            "gemm": peak,
            "configs": configs,
        },
        machine,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
