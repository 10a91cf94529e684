"""The PyTorch side of the comparisons: what a competent PyTorch user writes to score text.

    python benchmarks/torch_baseline.py SOURCE INPUT [--threads 2] [--batch-size 64]
        [--mode grouped|packed] [--output FILE]

SOURCE is a classify checkpoint folder (`bilstm train --out`) or an fp32 bilstm `.onnx`
classify model, whose weights are copied into the same PyTorch module (`from_onnx`), so the
baseline runs exactly the shipped model without its training run.

The script does the work `bilstm-run` does: import torch, build the model, tokenize each line
with the same tokenizer and vocabulary, score each 4,096-line chunk under
`torch.inference_mode()` with `torch.set_num_threads` matched to the runtime's, softmax, and
write one JSON line per input line. Two ways to batch:

- `grouped` (default, the fair baseline): rows of a chunk grouped by exact token count, each
  group cut into batches, and the LSTM layers called on the plain padded-free tensor
  (`forward_exact`). No packing: `nn.LSTM` on a packed sequence is PyTorch's slow path, and
  with equal lengths the outputs are the same (`max`/`mean` pooling need no mask, the final
  states are those after the last real token).
- `packed`: rows sorted by length, padded, and the model's own `forward`, which packs the
  sequences (what training does); kept as a second row.

The summary line on stderr has the same shape as bilstm-run's, timed from after loading to
the end of the output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODES = ("grouped", "packed")
CHUNK = 4096
ONNX_TO_TORCH_GATES = (0, 2, 3, 1)  # ONNX LSTM gates (i, o, f, c) -> PyTorch (i, f, g, o)


@dataclass
class TorchClassifier:
    """A PyTorch classifier with the preprocessing that feeds it."""

    net: Any
    labels: list[str]
    tokenizer: Any
    vocabulary: Any
    source: str

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (same tokenizer and vocabulary as the runtime)."""
        tokenize, encode = self.tokenizer.tokenize, self.vocabulary.encode
        return [encode(tokenize(text)) for text in texts]

    def probabilities(
        self, ids: Sequence[Sequence[int]], batch_size: int, mode: str = "grouped"
    ) -> list[list[float] | None]:
        """Softmax rows per text (None for a text without tokens), in input order."""
        import torch

        out: list[list[float] | None] = [None] * len(ids)
        with torch.inference_mode():
            for rows, x, lengths in batches(ids, batch_size, mode):
                logits = forward_exact(self.net, x) if lengths is None else self.net(x, lengths)
                for i, row in zip(rows, torch.softmax(logits, dim=-1).tolist(), strict=True):
                    out[i] = row
        return out

    def predict(
        self, texts: Sequence[str], batch_size: int, mode: str = "grouped"
    ) -> list[list[float] | None]:
        """Text in, probabilities out: the whole scoring step of a chunk."""
        return self.probabilities(self.encode(texts), batch_size, mode)


def batches(
    ids: Sequence[Sequence[int]], batch_size: int, mode: str
) -> Iterator[tuple[list[int], Any, Any]]:
    """(row indices, input tensor, lengths or None) per batch.

    grouped: rows of one exact length per batch, lengths None (no packing needed);
    packed: rows sorted longest first, zero-padded, with their lengths.
    """
    import torch

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "grouped":
        groups: dict[int, list[int]] = {}
        for i, seq in enumerate(ids):
            if seq:
                groups.setdefault(len(seq), []).append(i)
        for length in sorted(groups, reverse=True):
            rows = groups[length]
            for b in range(0, len(rows), batch_size):
                part = rows[b : b + batch_size]
                yield part, torch.tensor([ids[i] for i in part], dtype=torch.int64), None
        return
    order = sorted((i for i, seq in enumerate(ids) if seq), key=lambda i: -len(ids[i]))
    for b in range(0, len(order), batch_size):
        part = order[b : b + batch_size]
        lengths = torch.tensor([len(ids[i]) for i in part], dtype=torch.int64)
        x = torch.zeros(len(part), int(lengths.max()), dtype=torch.int64)
        for r, i in enumerate(part):
            x[r, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.int64)
        yield part, x, lengths


def forward_exact(net: Any, input_ids: Any) -> Any:
    """Logits of a `BiLSTMClassifier` for a batch whose rows all have the same length.

    The layers run on the plain tensor (no `pack_padded_sequence`); dropout is off in eval,
    so this is the model's `forward` without the machinery that ragged batches need.
    """
    import torch

    from bilstm.models.network import merge_directions

    cfg = net.cfg
    x = net.embedding(input_ids)
    final = x.new_zeros(0)
    for rnn in net.encoder.layers:
        y, state = rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        h = cfg.direction_size
        x = merge_directions(y[..., :h], y[..., h:], cfg.merge)
        final = merge_directions(h_n[0], h_n[1], cfg.merge)
    if cfg.pooling == "max":
        pooled = x.max(dim=1).values
    elif cfg.pooling == "mean":
        pooled = x.mean(dim=1)
    elif cfg.pooling == "last":
        pooled = final
    else:  # attention: every position is real, so no mask
        weights = torch.softmax(net.attention_score(torch.tanh(net.attention(x))), dim=1)
        pooled = (weights * x).sum(dim=1)
    return net.output(pooled)


def load_classifier(source: Path, threads: int | None = None) -> TorchClassifier:
    """The PyTorch classifier of a checkpoint folder or an fp32 bilstm `.onnx` file."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    source = Path(source)
    if source.is_dir():
        from bilstm.core.tokenizer import Tokenizer
        from bilstm.models import load_checkpoint

        ckpt = load_checkpoint(source)
        if ckpt.task != "classify" or ckpt.tokenizer is None:
            raise SystemExit(f"error: {source}: the PyTorch baseline scores classify models only")
        return TorchClassifier(
            ckpt.model.eval(), ckpt.labels, Tokenizer(ckpt.tokenizer), ckpt.vocabulary, str(source)
        )
    return from_onnx(source)


def from_onnx(path: Path) -> TorchClassifier:
    """A `BiLSTMClassifier` holding the weights of an fp32 bilstm classify `.onnx` file.

    Supported: fused LSTM layers (no projection) and max/mean/last pooling, which is every
    built-in classifier; anything else is refused with the reason.
    """
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    from bilstm.core.tokenizer import Tokenizer, TokenizerConfig
    from bilstm.core.vocab import Vocabulary
    from bilstm.models.config import ModelConfig
    from bilstm.models.network import build_model

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    if "bilstm" not in props:
        raise SystemExit(f"error: {path}: not a bilstm model (no 'bilstm' metadata)")
    meta = json.loads(props["bilstm"])
    cfg = ModelConfig.from_dict(meta["model"])
    precision = meta.get("export", {}).get("precision", "fp32")
    why = [
        (cfg.task != "classify", f"task {cfg.task!r} (classify only)"),
        (precision != "fp32", f"precision {precision!r} (pass the fp32 file)"),
        (cfg.cell != "lstm" or cfg.proj_size, "not a fused LSTM without projection"),
        (cfg.pooling == "attention", "attention pooling"),
    ]
    refused = [reason for bad, reason in why if bad]
    if refused:
        raise SystemExit(f"error: {path}: cannot rebuild in PyTorch: {', '.join(refused)}")
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    lstm_nodes = [n for n in model.graph.node if n.op_type == "LSTM"]
    gathers = [n for n in model.graph.node if n.op_type == "Gather" and n.input[0] in init]
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in init]
    adds = [n for n in model.graph.node if n.op_type == "Add" and n.input[1] in init]
    if len(lstm_nodes) != cfg.num_layers or not gathers or not matmuls or not adds:
        raise SystemExit(f"error: {path}: unexpected graph layout for a bilstm classifier")

    def gates(w: Any) -> Any:
        blocks = np.split(w, 4, axis=0)
        return np.concatenate([blocks[i] for i in ONNX_TO_TORCH_GATES], axis=0)

    state: dict[str, Any] = {"embedding.weight": init[gathers[0].input[0]]}
    for layer, node in enumerate(lstm_nodes):
        w, r, b = (init[name] for name in node.input[1:4])
        for d, sfx in enumerate(("", "_reverse")):
            bias_ih, bias_hh = np.split(b[d], 2)
            prefix = f"encoder.layers.{layer}."
            state[f"{prefix}weight_ih_l0{sfx}"] = gates(w[d])
            state[f"{prefix}weight_hh_l0{sfx}"] = gates(r[d])
            state[f"{prefix}bias_ih_l0{sfx}"] = gates(bias_ih)
            state[f"{prefix}bias_hh_l0{sfx}"] = gates(bias_hh)
    state["output.weight"] = init[matmuls[-1].input[1]].T
    state["output.bias"] = init[adds[-1].input[1]]
    net = build_model(cfg)
    net.load_state_dict(
        {k: torch.from_numpy(np.array(v, dtype=v.dtype, copy=True)) for k, v in state.items()}
    )
    return TorchClassifier(
        net.eval(),
        [str(x) for x in meta["labels"]],
        Tokenizer(TokenizerConfig.from_dict(meta["tokenizer"])),
        Vocabulary(meta["vocabulary"]),
        str(path),
    )


def checkpoint_from_onnx(path: Path, out: Path) -> Path:
    """Write the weights of an fp32 bilstm classify `.onnx` file as a checkpoint folder.

    The PyTorch side then loads what a PyTorch user loads (JSON + safetensors, no onnx
    import) and still runs exactly the shipped weights.
    """
    from bilstm.models.checkpoint import Checkpoint, save_checkpoint
    from bilstm.models.config import TrainConfig

    model = from_onnx(path)
    ckpt = Checkpoint(
        model=model.net,
        model_config=model.net.cfg,
        train_config=TrainConfig(),
        tokenizer=model.tokenizer.config,
        vocabulary=model.vocabulary,
        labels=model.labels,
        summary={"converted_from": Path(path).name},
    )
    save_checkpoint(ckpt, out)
    return out


def read_chunks(path: Path, size: int) -> Iterator[list[str]]:
    """Lines of a text file, `size` at a time, newline stripped."""
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        while True:
            chunk = [line.rstrip("\r\n") for _, line in zip(range(size), fh, strict=False)]
            if not chunk:
                return
            yield chunk


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("source", type=Path, help="classify checkpoint folder or fp32 bilstm .onnx")
    p.add_argument("input", type=Path)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=CHUNK)
    p.add_argument("--mode", choices=MODES, default="grouped")
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args(argv)

    import torch

    model = load_classifier(args.source, args.threads)
    labels = model.labels
    start = time.perf_counter()
    out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    count = 0
    for chunk in read_chunks(args.input, args.chunk_size):
        probs = model.predict(chunk, args.batch_size, args.mode)
        lines = []
        for n, pr in enumerate(probs, start=count + 1):
            if pr is None:
                record: dict[str, Any] = {"line": n, "label": None, "probabilities": None}
            else:
                best = max(range(len(pr)), key=pr.__getitem__)
                record = {
                    "line": n,
                    "label": labels[best],
                    "probabilities": {lab: round(v, 6) for lab, v in zip(labels, pr, strict=True)},
                }
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        out.write("".join(lines))
        count += len(chunk)
    out.flush()
    if args.output:
        out.close()
    elapsed = time.perf_counter() - start
    print(
        f"{count} lines, 0 errors, {elapsed:.4f} s ({count / max(elapsed, 1e-9):,.0f} lines/s) "
        f"on torch ({torch.get_num_threads()} threads, {args.mode})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
