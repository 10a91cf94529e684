"""Workload 6: int8 vs fp32 of the shipped model: speed, file size, task metric delta.

The int8 file comes from the project's int8 export of the same checkpoint
(`export_checkpoint(..., quantize="int8")`, i.e. `bilstm export --quantize int8`) where this
bilstm has it, otherwise from `onnxruntime.quantization.quantize_dynamic(weight_type=QInt8)`
applied to the fp32 file directly; the result says which (`method`). The script checks that the
LSTM really became `DynamicQuantizeLSTM`. Both files are loaded with `BiLSTM.load` (same
threads) and, interleaved: every dev text scored with `predict` (items/s), and single-text
`predict` latency (p50). Accuracy and macro-F1 of both on the labelled dev data, how many
labels changed and the largest probability change.

    python -m benchmarks.int8 --threads 2
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "int8"


def make_int8(fp32: Path, checkpoint: Path, out: Path) -> tuple[Path, str]:
    """(int8 file, how it was made): the project's int8 export where it exists."""
    import inspect

    import onnx

    from bilstm.export import export_checkpoint

    if "quantize" in inspect.signature(export_checkpoint).parameters:
        export_checkpoint(checkpoint, out, quantize="int8")
        method = "bilstm export --quantize int8 (export_checkpoint(..., quantize='int8'))"
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
        method = (
            "onnxruntime.quantization.quantize_dynamic(weight_type=QInt8) on the fp32 "
            "file (this bilstm has no int8 export yet)"
        )
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    if "DynamicQuantizeLSTM" not in ops:
        raise RuntimeError(f"{out}: the LSTM was not quantized (ops: {sorted(ops)})")
    return out, method


def metrics(
    gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]
) -> dict[str, float]:
    """Accuracy and macro-F1 (a text with no prediction counts as wrong)."""
    acc = sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)
    f1s = []
    for lab in labels:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred, strict=True))
        fp = sum(g != lab and p == lab for g, p in zip(gold, pred, strict=True))
        fn = sum(g == lab and p != lab for g, p in zip(gold, pred, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": acc, "macro_f1": sum(f1s) / len(f1s)}


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    c.add_asset_options(p)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=200, help="single-text calls per latency block")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.calls = 1, 5
    machine = c.machine_info(args.wait_quiet)
    assets = c.resolve_assets(args)

    from bilstm.runtime import BiLSTM

    int8_path, method = make_int8(
        assets.model,
        assets.checkpoint,
        Path(tempfile.mkdtemp(prefix="bilstm-bench-")) / "int8.onnx",
    )
    models = {
        "fp32": BiLSTM.load(assets.model, device="cpu", threads=args.threads),
        "int8": BiLSTM.load(int8_path, device="cpu", threads=args.threads),
    }
    data = c.read_tsv(assets.data)
    texts, gold = [t for _, t in data], [g for g, _ in data]
    sentence = sorted(texts, key=len)[len(texts) // 2]
    preds = {name: m.predict(texts) for name, m in models.items()}
    labels = models["fp32"].labels

    def latency(m: Any) -> float:
        xs = []
        for _ in range(args.calls):
            start = time.perf_counter()
            m.predict([sentence])
            xs.append(time.perf_counter() - start)
        return c.quantile(xs, 0.5)

    batch = c.interleave(
        {name: (lambda m=m: m.predict(texts)) for name, m in models.items()}, args.rounds
    )
    single = c.interleave(
        {name: (lambda m=m: latency(m)) for name, m in models.items()}, args.rounds, self_timed=True
    )
    rows: dict[str, Any] = {}
    for name in models:
        rows[name] = {
            "file_bytes": (assets.model if name == "fp32" else int8_path).stat().st_size,
            "items_per_s": len(texts) / c.median(batch[name]),
            "p50_ms_single": 1e3 * c.median(single[name]),
            **metrics(gold, [x.label for x in preds[name]], labels),
        }
    changed = sum(a.label != b.label for a, b in zip(preds["fp32"], preds["int8"], strict=True))
    max_diff = max(
        (
            abs(a.probabilities[k] - b.probabilities[k])
            for a, b in zip(preds["fp32"], preds["int8"], strict=True)
            if a.probabilities and b.probabilities
            for k in a.probabilities
        ),
        default=0.0,
    )
    result = {
        "method": method,
        "items": len(texts),
        "models": rows,
        "speedup_batch": c.ratio(rows["int8"]["items_per_s"], rows["fp32"]["items_per_s"]),
        "speedup_single_p50": c.ratio(rows["fp32"]["p50_ms_single"], rows["int8"]["p50_ms_single"]),
        "size_ratio": c.ratio(rows["int8"]["file_bytes"], rows["fp32"]["file_bytes"]),
        "accuracy_delta": rows["int8"]["accuracy"] - rows["fp32"]["accuracy"],
        "macro_f1_delta": rows["int8"]["macro_f1"] - rows["fp32"]["macro_f1"],
        "labels_changed": changed,
        "max_prob_diff": max_diff,
    }
    print(
        f"int8: {result['speedup_batch']:.2f}x items/s, size x{result['size_ratio']:.2f}, "
        f"accuracy {result['accuracy_delta']:+.4f}",
        file=sys.stderr,
    )
    c.save(NAME, args, argv, result, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
