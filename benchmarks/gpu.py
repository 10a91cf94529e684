"""GPU: ONNX Runtime CUDA vs PyTorch CUDA (cuDNN), same weights, one process, interleaved.

Needs a CUDA GPU, torch with CUDA, and `onnxruntime-gpu` (not the CPU wheel beside it);
works offline. Without them it writes a result saying why it skipped and exits 0.

- kernel: the 2-layer BiLSTM of `benchmarks.kernels` (input 300, hidden 256) at batch
  1..1024 and length 50/200, fp32 and fp16; ONNX Runtime through I/O binding (input and
  output on the GPU, `sequence_lens` in host memory as the CUDA LSTM wants) vs `nn.LSTM`
  (cuDNN), with the largest output difference of each pair;
- binding: `BiLSTM.run` on the shipped sentiment model with I/O binding off and on, per batch
  size (this sets `IO_BINDING_MIN_BATCH`);
- scoring: texts of the data with `BiLSTM.load(device="cuda").predict` (TF32 off, the
  default, and on) vs the PyTorch checkpoint on CUDA doing the same batches, per batch size;
- parity: each checkpoint given with --parity (fp32 and fp16 exports) on CUDA vs PyTorch fp32
  on the CPU: ragged random batches and the checkpoint's dev examples, with ONNX Runtime's
  default CUDA options and with TF32 off.

    python -m benchmarks.gpu --checkpoint runs/recipe/sentiment --parity runs/pos-en ...
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c
from benchmarks.kernels import build_onnx, lstm_flops

NAME = "gpu"
BATCHES = (1, 8, 32, 128, 512, 1024)
LENGTHS = (50, 200)
BINDING_BATCHES = (16, 64, 256, 1024, 4096)
SCORING_BATCHES = (64, 256, 1024)
PARITY_SHAPES = ((8, 13), (64, 40), (512, 30), (1, 1))


def unavailable() -> str | None:
    """Why the GPU comparison cannot run here (None: it can)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU (CPU build of torch, or no GPU/driver)"
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (
            "this onnxruntime has no CUDAExecutionProvider: install onnxruntime-gpu in place "
            "of onnxruntime (pip uninstall -y onnxruntime && "
            "pip install 'onnxruntime-gpu[cuda,cudnn]>=1.21')"
        )
    return None


def cuda_session(path: Path, **options: Any) -> Any:
    """A CUDA session on `path` with these CUDA provider options; refuses a CPU fallback."""
    import onnxruntime as ort

    sess = ort.InferenceSession(
        str(path), providers=[("CUDAExecutionProvider", options), "CPUExecutionProvider"]
    )
    if sess.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(
            f"ONNX Runtime fell back to {sess.get_providers()}: CUDA could not "
            "start (CUDA/cuDNN libraries?)"
        )
    return sess


def to_fp16(path: Path, out: Path) -> Path:
    """The kernel graph with fp16 weights, input and output (LSTM supports float16)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(path))
    for i, init in enumerate(model.graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            arr = numpy_helper.to_array(init).astype(np.float16)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, init.name))
    for value in [*model.graph.input, *model.graph.output]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.save(model, str(out))
    return out


def kernel_rows(args: Any) -> list[dict[str, Any]]:
    import copy

    import numpy as np
    import onnxruntime as ort
    import torch

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(300, 256, num_layers=2, bidirectional=True).eval()
    folder = Path(tempfile.mkdtemp(prefix="bilstm-bench-"))
    path = build_onnx(lstm, folder / "k.onnx", 300, 256, 2)
    sessions = {"fp32": cuda_session(path), "fp16": cuda_session(to_fp16(path, folder / "h.onnx"))}
    nets = {"fp32": lstm.cuda(), "fp16": copy.deepcopy(lstm).half().cuda()}
    dtypes = {"fp32": np.float32, "fp16": np.float16}
    rows = []
    batches = (1, 32) if args.smoke else BATCHES
    for length in (50,) if args.smoke else LENGTHS:
        for batch in batches:
            rng = np.random.default_rng(batch * 1000 + length)
            x32 = rng.standard_normal((length, batch, 300), dtype=np.float32)
            lens = np.full(batch, length, dtype=np.int32)
            cases: dict[str, Callable[[], float]] = {}
            diffs: dict[str, float] = {}
            for prec, sess in sessions.items():
                x = x32.astype(dtypes[prec])
                binding = sess.io_binding()
                binding.bind_ortvalue_input("X", ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
                binding.bind_cpu_input("seq_lens", lens)
                binding.bind_output("Y", "cuda", 0)
                tx = torch.from_numpy(x).cuda()
                net = nets[prec]

                def ort_run(sess: Any = sess, binding: Any = binding) -> None:
                    sess.run_with_iobinding(binding)

                def torch_run(net: Any = net, tx: Any = tx) -> Any:
                    with torch.inference_mode():
                        return net(tx)[0]

                ort_run()
                got = binding.copy_outputs_to_cpu()[0].astype(np.float32)
                want = torch_run().float().cpu().numpy()
                diffs[prec] = float(np.abs(got - want).max())
                budget = args.budget
                cases[f"ort_{prec}"] = lambda f=ort_run, b=budget: c.per_call_seconds(f, b)
                cases[f"torch_{prec}"] = lambda f=torch_run, b=budget: c.per_call_seconds(
                    f, b, torch.cuda.synchronize
                )
            times = c.interleave(cases, args.rounds, self_timed=True)
            flops = lstm_flops(batch, length, 300, 256, 2)
            ms = {k: 1e3 * c.median(v) for k, v in times.items()}
            rows.append(
                {
                    "batch": batch,
                    "length": length,
                    "ms": ms,
                    "gflops": {k: flops / (v / 1e3) / 1e9 for k, v in ms.items()},
                    "speedup_vs_torch": {
                        p: ms[f"torch_{p}"] / ms[f"ort_{p}"] for p in ("fp32", "fp16")
                    },
                    "max_abs_diff_vs_torch": diffs,
                }
            )
            print(f"kernel b={batch} t={length}: {ms} diffs {diffs}", file=sys.stderr)
    return rows


def binding_rows(args: Any, model_path: Path) -> list[dict[str, Any]]:
    """`BiLSTM.run` with I/O binding off vs on, per batch size, on real-length inputs."""
    import numpy as np

    from bilstm.runtime import BiLSTM

    model = BiLSTM.load(model_path, device="cuda")
    vocab = len(model.metadata.vocabulary)
    rows = []
    for batch in (16, 256) if args.smoke else BINDING_BATCHES:
        rng = np.random.default_rng(batch)
        lens = rng.integers(5, 41, size=batch).astype(np.int64)
        ids = rng.integers(2, vocab, size=(batch, 40)).astype(np.int64)
        ids[np.arange(40)[None, :] >= lens[:, None]] = 0
        feeds = {"input_ids": ids, "lengths": lens}

        def call(threshold: int | None, feeds: dict[str, Any] = feeds) -> float:
            model.io_binding_min_batch = threshold
            return c.per_call_seconds(lambda: model.run(feeds, ["probabilities"]), args.budget)

        times = c.interleave(
            {"plain": lambda: call(None), "bound": lambda: call(1)}, args.rounds, self_timed=True
        )
        ms = {k: 1e3 * c.median(v) for k, v in times.items()}
        rows.append({"batch": batch, "ms": ms, "bound_speedup": ms["plain"] / ms["bound"]})
        print(f"binding b={batch}: {ms}", file=sys.stderr)
    return rows


def scoring(args: Any, assets: c.Assets) -> list[dict[str, Any]]:
    """Texts scored end to end: the runtime on CUDA vs the PyTorch checkpoint on CUDA."""
    import torch

    from bilstm.core.tokenizer import Tokenizer
    from bilstm.models import load_checkpoint
    from bilstm.runtime import BiLSTM

    model = BiLSTM.load(assets.model, device="cuda")
    fast = BiLSTM.load(assets.model, device="cuda", tf32=True)
    ckpt = load_checkpoint(assets.checkpoint)
    net = ckpt.model.eval().cuda()
    tokenize, encode = Tokenizer(ckpt.tokenizer).tokenize, ckpt.vocabulary.encode
    texts = [t for _, t in c.read_tsv(assets.data)] * args.repeat
    rows = []
    for size in SCORING_BATCHES:

        def torch_score(size: int = size) -> None:
            ids = [encode(tokenize(t)) for t in texts]
            order = sorted((i for i, s in enumerate(ids) if s), key=lambda i: -len(ids[i]))
            with torch.inference_mode():
                for b in range(0, len(order), size):
                    batch = order[b : b + size]
                    lens = torch.tensor([len(ids[i]) for i in batch])
                    x = torch.zeros(len(batch), int(lens.max()), dtype=torch.int64)
                    for r, i in enumerate(batch):
                        x[r, : len(ids[i])] = torch.tensor(ids[i])
                    torch.softmax(net(x.cuda(), lens), dim=-1).cpu()

        cases = {
            "runtime_cuda": lambda size=size: model.predict(texts, batch_size=size),
            "runtime_cuda_tf32": lambda size=size: fast.predict(texts, batch_size=size),
            "torch_cuda": torch_score,
        }
        for fn in cases.values():
            fn()
        times = c.interleave(cases, args.rounds)
        rates = {k: len(texts) / c.median(v) for k, v in times.items()}
        rows.append(
            {
                "batch_size": size,
                "items": len(texts),
                "items_per_s": rates,
                "ratio": c.ratio(rates["runtime_cuda"], rates["torch_cuda"]),
            }
        )
        print(f"scoring batch={size}: {rates}", file=sys.stderr)
    return rows


def parity(checkpoints: Sequence[Path]) -> list[dict[str, Any]]:
    """Exported fp32/fp16 models on CUDA vs PyTorch fp32 on the CPU, per output."""
    import numpy as np

    from bilstm.export import export_checkpoint
    from bilstm.export.verify import (
        example_feeds,
        random_feeds,
        reference_outputs,
        valid_positions,
    )
    from bilstm.models import load_checkpoint

    rows = []
    folder = Path(tempfile.mkdtemp(prefix="bilstm-bench-"))
    for directory in checkpoints:
        ckpt = load_checkpoint(directory)
        cases = [
            (f"random {b}x{t}", random_feeds(ckpt, b, t, i))
            for i, (b, t) in enumerate(PARITY_SHAPES)
        ]
        real = example_feeds(ckpt)
        if real is not None:
            cases.append(("dev examples", real))
        refs = [reference_outputs(ckpt, feeds) for _, feeds in cases]
        variants = ["fp32"] if ckpt.task == "forecast" else ["fp32", "fp16"]
        for variant in variants:
            path = folder / f"{directory.name}-{variant}.onnx"
            export_checkpoint(ckpt, path, fp16=variant == "fp16")
            for label, options in (("default", {}), ("tf32 off", {"use_tf32": 0})):
                sess = cuda_session(path, **options)
                names = [o.name for o in sess.get_outputs()]
                worst: dict[str, dict[str, float]] = {}
                for (_, feeds), ref in zip(cases, refs, strict=True):
                    got = dict(zip(names, sess.run(names, feeds), strict=True))
                    for name, want in ref.items():
                        have = valid_positions(ckpt.task, feeds, got[name]).astype(np.float64)
                        want64 = valid_positions(ckpt.task, feeds, want).astype(np.float64)
                        diff = np.abs(have - want64)
                        w = worst.setdefault(name, {"max_abs": 0.0, "max_scaled": 0.0})
                        w["max_abs"] = max(w["max_abs"], float(diff.max()))
                        w["max_scaled"] = max(
                            w["max_scaled"], float((diff / (1 + np.abs(want64))).max())
                        )
                rows.append(
                    {
                        "model": directory.name,
                        "task": ckpt.task,
                        "variant": variant,
                        "cuda_options": label,
                        "cases": [name for name, _ in cases],
                        "outputs": worst,
                    }
                )
                print(f"parity {directory.name} {variant} {label}: {worst}", file=sys.stderr)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    c.add_asset_options(p)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--budget", type=float, default=0.3)
    p.add_argument("--repeat", type=int, default=20, help="scoring: times the data is repeated")
    p.add_argument(
        "--parity", type=Path, nargs="*", default=[], help="checkpoints for the parity section"
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.budget, args.repeat = 1, 0.01, 1
    machine = c.machine_info(args.wait_quiet)
    reason = unavailable()
    if reason is not None:
        print(f"gpu benchmark skipped: {reason}", file=sys.stderr)
        c.save(NAME, args, argv, {"skipped": reason}, machine)
        return 0
    import torch

    machine["gpu"] = torch.cuda.get_device_name(0)
    machine["torch_cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
    machine["torch_matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    result: dict[str, Any] = {}
    sections: list[tuple[str, Callable[[], Any]]] = [
        ("parity", lambda: parity(args.parity)),
        ("kernel", lambda: kernel_rows(args)),
    ]
    if not args.smoke:
        try:
            assets = c.resolve_assets(args)
        except SystemExit as exc:  # data or checkpoint missing: say so in the result
            result["scoring"] = {"skipped": str(exc)}
        else:
            sections += [
                ("binding", lambda: binding_rows(args, assets.model)),
                ("scoring", lambda: scoring(args, assets)),
            ]
    for name, run in sections:  # one failing section still leaves the others' numbers
        try:
            result[name] = run()
        except Exception as exc:  # noqa: BLE001 - recorded in the result, not swallowed
            print(f"gpu benchmark: section {name} failed: {exc!r}", file=sys.stderr)
            result[name] = {"failed": repr(exc)}
        c.save(NAME, args, argv, result, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
