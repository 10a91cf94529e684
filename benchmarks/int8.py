"""Workload 6: int8 vs fp32 of the same weights: speed, file size, task metric delta.

The pair is always two exports of one set of weights. By default the shipped `sentiment` and
`sentiment-int8` (the script checks that the int8 file's recorded fp32 weight hash equals the
fp32 file's, and refuses the pair otherwise); with `--int8 FILE` that file against `--model`
(same check); with `--checkpoint DIR` and no `--int8`, both are exported from that checkpoint
(`bilstm export` and `bilstm export --quantize int8`). The LSTM must really be
`DynamicQuantizeLSTM`. Both files are loaded with `BiLSTM.load` (same threads) and,
interleaved: every dev text scored with `predict` (items/s), and single-text `predict`
latency (p50). Accuracy and macro-F1 of both on the labelled dev data, how many labels
changed and the largest probability change.

    python -m benchmarks.int8 --threads 2
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "int8"
SHIPPED_INT8 = "sentiment-int8"


def export_info(path: Path) -> dict[str, Any]:
    """The `export` section of a bilstm model's metadata."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    return dict(json.loads(props["bilstm"]).get("export", {}))


def same_weights(fp32: Path, int8: Path) -> bool:
    """Whether the int8 file was derived from exactly the fp32 file's weights."""
    a, b = export_info(fp32), export_info(int8)
    want = a.get("weights_sha256")
    return want is not None and b.get("fp32", {}).get("weights_sha256") == want


def check_quantized(path: Path) -> None:
    import onnx

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    if "DynamicQuantizeLSTM" not in ops:
        raise RuntimeError(f"{path}: the LSTM was not quantized (ops: {sorted(ops)})")


def pair(args: Any, assets: c.Assets) -> tuple[Path, Path, str]:
    """(fp32 file, int8 file, how they were paired)."""
    from bilstm.runtime.builtin import resolve_model

    work = Path(tempfile.mkdtemp(prefix="bilstm-bench-"))
    int8 = args.int8
    if int8 is None and args.model is None and args.checkpoint is None and not args.smoke:
        int8 = SHIPPED_INT8
    if int8 is not None:
        fp32, q = Path(assets.model), Path(resolve_model(int8))
        if not same_weights(fp32, q):
            sys.exit(f"error: {q} was not quantized from {fp32}'s weights (fp32 hashes differ)")
        how = f"{q.name} against {fp32.name}: the int8 file's fp32 weight hash matches"
    else:
        from bilstm.export import export_checkpoint

        fp32, q = work / "fp32.onnx", work / "int8.onnx"
        export_checkpoint(assets.checkpoint, fp32)
        export_checkpoint(assets.checkpoint, q, quantize="int8")
        how = "both exported from the same checkpoint (bilstm export, --quantize int8)"
    check_quantized(q)
    return fp32, q, how


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
    p.add_argument("--int8", default=None, help="int8 file or built-in name to pair with --model")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=200, help="single-text calls per latency block")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.calls = 1, 5
    machine = c.machine_info(args.wait_quiet)
    assets = c.resolve_assets(args)

    from bilstm.runtime import BiLSTM

    fp32_path, int8_path, method = pair(args, assets)
    models = {
        "fp32": BiLSTM.load(fp32_path, device="cpu", threads=args.threads),
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
            "file_bytes": (fp32_path if name == "fp32" else int8_path).stat().st_size,
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
