"""Workload 2: single-request latency through the Python API (one sentence, warm).

`BiLSTM.load(model, device="cpu", threads=n).predict([sentence])` against PyTorch eager doing
the same request the way a competent user writes it (`benchmarks/torch_baseline.py`: same
tokenizer and vocabulary, a one-row tensor through the layers without packing under
`inference_mode`, softmax, label and probabilities; `torch.set_num_threads(n)`), in one
process with the same weights. The packed path (the model's own `forward`) is a second row.
After a warm-up, blocks of calls alternate A, B, A, B; p50/p99 over all calls. The graph
alone (`session.run` on pre-encoded arrays) and the PyTorch forward alone are timed the same
way, to show where the time goes.

    python -m benchmarks.latency --threads 2
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks import _common as c

NAME = "latency"
TARGET = 0.5
FALLBACK_SENTENCE = "A gorgeous, witty, seductive movie that never lets its audience down."


def pick_sentence(texts: Sequence[str]) -> str:
    """A text of median length from the data (a typical request)."""
    if not texts:
        return FALLBACK_SENTENCE
    ordered = sorted(texts, key=len)
    return ordered[len(ordered) // 2]


def timed_block(fn: Callable[[], Any], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    c.add_asset_options(p)
    p.add_argument("--rounds", type=int, default=20, help="alternating blocks per side")
    p.add_argument("--calls", type=int, default=100, help="calls per block")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--sentence", default=None, help="the request (default: a median dev text)")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.calls, args.warmup = 2, 5, 3
    machine = c.machine_info(args.wait_quiet)
    assets = c.resolve_assets(args)

    import numpy as np
    import torch

    from benchmarks import torch_baseline as tb
    from bilstm.runtime import BiLSTM

    sentence = args.sentence or pick_sentence([t for _, t in c.read_tsv(assets.data)])
    model = BiLSTM.load(assets.model, device="cpu", threads=args.threads)
    reference = tb.load_classifier(assets.checkpoint, args.threads)
    net, labels = reference.net, reference.labels

    def torch_predict(packed: bool = False) -> tuple[str, dict[str, float]]:
        ids = reference.encode([sentence])[0]
        with torch.inference_mode():
            x = torch.tensor([ids], dtype=torch.int64)
            if packed:
                logits = net(x, torch.tensor([len(ids)], dtype=torch.int64))
            else:
                logits = tb.forward_exact(net, x)
            probs = torch.softmax(logits, dim=-1)[0].tolist()
        best = max(range(len(probs)), key=probs.__getitem__)
        return labels[best], dict(zip(labels, probs, strict=True))

    ids = reference.encode([sentence])[0]
    feeds = {
        "input_ids": np.array([ids], dtype=np.int64),
        "lengths": np.array([len(ids)], dtype=np.int64),
    }
    t_ids = torch.tensor([ids])

    def torch_forward() -> Any:
        with torch.inference_mode():
            return tb.forward_exact(net, t_ids)

    cases: dict[str, Callable[[], Any]] = {
        "runtime_predict": lambda: model.predict([sentence]),
        "torch_predict": torch_predict,
        "torch_predict_packed": lambda: torch_predict(packed=True),
        "runtime_graph_only": lambda: model.session.run(None, feeds),
        "torch_forward_only": torch_forward,
    }
    got, want = model.predict([sentence])[0], torch_predict()
    for fn in cases.values():
        timed_block(fn, args.warmup)
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            samples[name].extend(timed_block(fn, args.calls))
    stats = {
        name: {
            "p50_ms": 1e3 * c.quantile(xs, 0.5),
            "p99_ms": 1e3 * c.quantile(xs, 0.99),
            "mean_ms": 1e3 * sum(xs) / len(xs),
            "n": len(xs),
        }
        for name, xs in samples.items()
    }
    result = {
        "target_ratio_p50": TARGET,
        "sentence": sentence,
        "tokens": len(ids),
        "same_label": got.label == want[0],
        "torch_threads": torch.get_num_threads(),
        "cases": stats,
        "ratio_p50": c.ratio(stats["runtime_predict"]["p50_ms"], stats["torch_predict"]["p50_ms"]),
        "ratio_p99": c.ratio(stats["runtime_predict"]["p99_ms"], stats["torch_predict"]["p99_ms"]),
        "ratio_graph_vs_forward_p50": c.ratio(
            stats["runtime_graph_only"]["p50_ms"], stats["torch_forward_only"]["p50_ms"]
        ),
    }
    print(
        f"p50 runtime {stats['runtime_predict']['p50_ms']:.3f} ms, torch "
        f"{stats['torch_predict']['p50_ms']:.3f} ms, ratio {result['ratio_p50']:.2f}",
        file=sys.stderr,
    )
    c.save(NAME, args, argv, result, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
