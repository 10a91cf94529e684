"""The PyTorch side of the comparisons: a straightforward script that scores a text file.

    python benchmarks/torch_baseline.py CHECKPOINT INPUT [--threads 2] [--batch-size 64]

It does the work `bilstm-run` does, the way a PyTorch user would write it: import torch, load
the checkpoint, tokenize each line with the same tokenizer and vocabulary, sort a chunk of
lines by length, pad each batch, run the model (which packs the sequences) under
`torch.inference_mode()`, softmax, and write one JSON line per input line. The summary line on
stderr has the same shape as bilstm-run's, timed from after loading to the end of the output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("input", type=Path)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=4096)
    p.add_argument("--no-sort", action="store_true", help="batches in file order")
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args(argv)

    import torch

    from bilstm.core.tokenizer import Tokenizer
    from bilstm.models import load_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.model.eval()
    tokenize, encode = Tokenizer(ckpt.tokenizer).tokenize, ckpt.vocabulary.encode
    labels = ckpt.labels

    start = time.perf_counter()
    out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    count = 0
    with args.input.open(encoding="utf-8", errors="replace", newline="") as fh:
        while True:
            chunk = [
                line.rstrip("\r\n") for _, line in zip(range(args.chunk_size), fh, strict=False)
            ]
            if not chunk:
                break
            ids = [encode(tokenize(text)) for text in chunk]
            probs: list[list[float] | None] = [None] * len(chunk)
            rows = [i for i, seq in enumerate(ids) if seq]
            if not args.no_sort:
                rows.sort(key=lambda i: -len(ids[i]))
            with torch.inference_mode():
                for b in range(0, len(rows), args.batch_size):
                    batch = rows[b : b + args.batch_size]
                    lengths = torch.tensor([len(ids[i]) for i in batch], dtype=torch.int64)
                    x = torch.zeros(len(batch), int(lengths.max()), dtype=torch.int64)
                    for r, i in enumerate(batch):
                        x[r, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.int64)
                    p_batch = torch.softmax(model(x, lengths), dim=-1).tolist()
                    for i, pr in zip(batch, p_batch, strict=True):
                        probs[i] = pr
            for n, pr in enumerate(probs, start=count + 1):
                if pr is None:
                    record = {"line": n, "label": None, "probabilities": None}
                else:
                    best = max(range(len(pr)), key=pr.__getitem__)
                    record = {
                        "line": n,
                        "label": labels[best],
                        "probabilities": {
                            lab: round(v, 6) for lab, v in zip(labels, pr, strict=True)
                        },
                    }
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += len(chunk)
    out.flush()
    if args.output:
        out.close()
    elapsed = time.perf_counter() - start
    print(
        f"{count} lines, 0 errors, {elapsed:.4f} s ({count / max(elapsed, 1e-9):,.0f} lines/s) "
        f"on torch ({torch.get_num_threads()} threads)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
