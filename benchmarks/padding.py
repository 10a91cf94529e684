"""Workload 7: padding waste. Items/s with length bucketing on vs off on real, ragged data.

The texts are encoded once; two batch plans of the same batch size are padded once:
`bucketed` (each chunk of 4096 texts sorted by length, longest first, as `bilstm-run` does)
and `file_order` (batches as the lines come). Timed: running every batch of a plan through
the ONNX Runtime session, and through the PyTorch model (which packs each batch, so its RNN
skips padding but the embedding and pooling do not), interleaved, same threads and weights.
A third PyTorch row is the fair baseline's plan (`benchmarks/torch_baseline.py`): batches of
one exact length through the layers without packing, so nothing is padded.
Padding fraction = padded slots / all slots of the plan.

    python -m benchmarks.padding --threads 2
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks import _common as c

NAME = "padding"
CHUNK = 4096


def plans(lengths: Sequence[int], batch_size: int) -> dict[str, list[list[int]]]:
    """Index batches: bucketed (sorted within each chunk) and in file order."""
    bucketed, file_order = [], []
    for start in range(0, len(lengths), CHUNK):
        idx = list(range(start, min(start + CHUNK, len(lengths))))
        ordered = sorted(idx, key=lambda i: -lengths[i])
        bucketed += [ordered[b : b + batch_size] for b in range(0, len(ordered), batch_size)]
        file_order += [idx[b : b + batch_size] for b in range(0, len(idx), batch_size)]
    return {"bucketed": bucketed, "file_order": file_order}


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    c.add_asset_options(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3, help="times the data is repeated")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.repeat, args.rounds = 1, 1
    machine = c.machine_info(args.wait_quiet)
    assets = c.resolve_assets(args)

    import numpy as np

    from bilstm.runtime import BiLSTM

    model = BiLSTM.load(assets.model, device="cpu", threads=args.threads)
    texts = [t for _, t in c.read_tsv(assets.data)] * args.repeat
    encoded = [e for e in model.encode(texts) if e]
    lengths = [len(e) for e in encoded]
    batches: dict[str, list[tuple[Any, Any]]] = {}
    padding: dict[str, float] = {}
    for name, plan in plans(lengths, args.batch_size).items():
        padded = []
        slots = 0
        for batch in plan:
            width = max(lengths[i] for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            for r, i in enumerate(batch):
                ids[r, : lengths[i]] = encoded[i]
            padded.append((ids, np.array([lengths[i] for i in batch], dtype=np.int64)))
            slots += ids.size
        batches[name] = padded
        padding[name] = 1 - sum(lengths) / slots

    session = model.session
    cases: dict[str, Callable[[], Any]] = {}
    for name, padded in batches.items():
        cases[f"runtime_{name}"] = lambda padded=padded: [
            session.run(None, {"input_ids": ids, "lengths": lens}) for ids, lens in padded
        ]
    if not args.no_torch:
        import torch

        from bilstm.models import load_checkpoint

        torch.set_num_threads(args.threads)
        net = load_checkpoint(assets.checkpoint).model.eval()
        tensors = {
            name: [(torch.from_numpy(i), torch.from_numpy(n)) for i, n in padded]
            for name, padded in batches.items()
        }

        def run_torch(padded: list[tuple[Any, Any]]) -> None:
            with torch.inference_mode():
                for ids, lens in padded:
                    net(ids, lens)

        for name, padded in tensors.items():
            cases[f"torch_{name}"] = lambda padded=padded: run_torch(padded)
        # The fair baseline's plan: exact-length groups, layers without packing, no padding.
        from benchmarks import torch_baseline as tb

        exact = [x for _, x, _ in tb.batches(encoded, args.batch_size, "grouped")]

        def run_exact() -> None:
            with torch.inference_mode():
                for x in exact:
                    tb.forward_exact(net, x)

        cases["torch_exact_length_unpacked"] = run_exact
    for fn in cases.values():
        fn()
    times = c.interleave(cases, args.rounds)
    rows = {
        name: {"s": c.summary(xs), "items_per_s": len(encoded) / c.median(xs)}
        for name, xs in times.items()
    }
    result: dict[str, Any] = {
        "items": len(encoded),
        "tokens": sum(lengths),
        "batch_size": args.batch_size,
        "padding_fraction": padding,
        "cases": rows,
        "speedup_bucketing_runtime": c.ratio(
            rows["runtime_bucketed"]["items_per_s"], rows["runtime_file_order"]["items_per_s"]
        ),
    }
    if not args.no_torch:
        result["speedup_bucketing_torch"] = c.ratio(
            rows["torch_bucketed"]["items_per_s"], rows["torch_file_order"]["items_per_s"]
        )
    print(
        f"bucketing speeds the runtime up {result['speedup_bucketing_runtime']:.2f}x "
        f"(padding {padding['file_order']:.0%} -> {padding['bucketed']:.0%})",
        file=sys.stderr,
    )
    c.save(NAME, args, argv, result, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
