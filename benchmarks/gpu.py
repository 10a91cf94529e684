"""GPU: ONNX Runtime CUDA vs PyTorch CUDA, same weights, one process, interleaved.

Needs a CUDA GPU, torch with CUDA, and `onnxruntime-gpu` (not the CPU wheel beside it);
works offline. Without them it writes a result saying why it skipped and exits 0.

- kernel: the 2-layer BiLSTM of `benchmarks.kernels` (input 300, hidden 256) at batch
  1/32/128 and length 50/200; ONNX Runtime with I/O binding (input and output on the GPU,
  `sequence_lens` in host memory as the CUDA LSTM wants) vs `nn.LSTM` (cuDNN) with
  `torch.cuda.synchronize()`;
- scoring: every text of the data with `BiLSTM.load(device="cuda").predict` vs the PyTorch
  checkpoint on CUDA doing the same batches (skipped with --smoke or when the assets are
  missing).

    python -m benchmarks.gpu
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c
from benchmarks.kernels import build_onnx, lstm_flops

NAME = "gpu"


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
            "of onnxruntime (pip uninstall -y onnxruntime && pip install 'bilstm[gpu]')"
        )
    return None


def cuda_session(path: Path) -> Any:
    import onnxruntime as ort

    sess = ort.InferenceSession(
        str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    if sess.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(
            f"ONNX Runtime fell back to {sess.get_providers()}: CUDA could not "
            "start (CUDA/cuDNN libraries?)"
        )
    return sess


def timed(fn: Callable[[], Any], sync: Callable[[], None], budget: float) -> float:
    fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - start
    calls = max(1, int(budget / max(first, 1e-6)))
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - start) / calls


def kernel_rows(args: Any) -> list[dict[str, Any]]:
    import numpy as np
    import onnxruntime as ort
    import torch

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(300, 256, num_layers=2, bidirectional=True).eval()
    path = build_onnx(lstm, Path(tempfile.mkdtemp(prefix="bilstm-bench-")) / "k.onnx", 300, 256, 2)
    lstm = lstm.cuda()
    sess = cuda_session(path)
    rows = []
    for length in (50, 200):
        for batch in (1, 32, 128):
            x = np.random.default_rng(1).standard_normal((length, batch, 300), dtype=np.float32)
            lens = np.full(batch, length, dtype=np.int32)
            binding = sess.io_binding()
            binding.bind_ortvalue_input("X", ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
            binding.bind_cpu_input("seq_lens", lens)
            binding.bind_output("Y", "cuda", 0)
            tx = torch.from_numpy(x).cuda()

            def ort_run(binding: Any = binding) -> None:
                sess.run_with_iobinding(binding)

            def torch_run(tx: Any = tx) -> None:
                with torch.inference_mode():
                    lstm(tx)

            times = c.interleave(
                {
                    "ort_cuda": lambda: timed(ort_run, lambda: None, args.budget),
                    "torch_cuda": lambda: timed(torch_run, torch.cuda.synchronize, args.budget),
                },
                args.rounds,
                self_timed=True,
            )
            flops = lstm_flops(batch, length, 300, 256, 2)
            ms = {k: 1e3 * c.median(v) for k, v in times.items()}
            rows.append(
                {
                    "batch": batch,
                    "length": length,
                    "ms": ms,
                    "gflops": {k: flops / (v / 1e3) / 1e9 for k, v in ms.items()},
                    "speedup_vs_torch": ms["torch_cuda"] / ms["ort_cuda"],
                }
            )
            print(f"b={batch} t={length}: {ms}", file=sys.stderr)
    return rows


def scoring(args: Any, assets: c.Assets) -> dict[str, Any]:
    import torch

    from bilstm.models import load_checkpoint
    from bilstm.runtime import BiLSTM
    from bilstm.runtime.tokenizer import Tokenizer

    model = BiLSTM.load(assets.model, device="cuda")
    ckpt = load_checkpoint(assets.checkpoint)
    net = ckpt.model.eval().cuda()
    tokenize, encode = Tokenizer(ckpt.tokenizer).tokenize, ckpt.vocabulary.encode
    texts = [t for _, t in c.read_tsv(assets.data)]

    def torch_score() -> None:
        ids = [encode(tokenize(t)) for t in texts]
        rows = sorted((i for i, s in enumerate(ids) if s), key=lambda i: -len(ids[i]))
        with torch.inference_mode():
            for b in range(0, len(rows), 64):
                batch = rows[b : b + 64]
                lens = torch.tensor([len(ids[i]) for i in batch])
                x = torch.zeros(len(batch), int(lens.max()), dtype=torch.int64)
                for r, i in enumerate(batch):
                    x[r, : len(ids[i])] = torch.tensor(ids[i])
                torch.softmax(net(x.cuda(), lens), dim=-1).cpu()

    cases = {"runtime_cuda": lambda: model.predict(texts), "torch_cuda": torch_score}
    for fn in cases.values():
        fn()
    times = c.interleave(cases, args.rounds)
    rates = {k: len(texts) / c.median(v) for k, v in times.items()}
    return {
        "items": len(texts),
        "providers": model.providers,
        "items_per_s": rates,
        "ratio": c.ratio(rates["runtime_cuda"], rates["torch_cuda"]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    c.add_asset_options(p)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--budget", type=float, default=0.3)
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.budget = 1, 0.01
    machine = c.machine_info(args.wait_quiet)
    reason = unavailable()
    if reason is not None:
        print(f"gpu benchmark skipped: {reason}", file=sys.stderr)
        c.save(NAME, args, argv, {"skipped": reason}, machine)
        return 0
    import torch

    machine["gpu"] = torch.cuda.get_device_name(0)
    result: dict[str, Any] = {"kernel": kernel_rows(args)}
    if not args.smoke:
        try:
            result["scoring"] = scoring(args, c.resolve_assets(args))
        except SystemExit as exc:
            result["scoring"] = {"skipped": str(exc)}
    c.save(NAME, args, argv, result, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
