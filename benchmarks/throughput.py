"""Workload 1: batch scoring, `bilstm-run` against a fair PyTorch baseline, with the roofline.

Three steps in one run, same machine, same thread count everywhere:

1. Roofline: this machine's fp32 GEMM peak through ONNX Runtime's MLAS at the run's thread
   count (numpy's beside it), measured at the start and at the end of the run (the best
   kept), and each model's FLOPs per item on the data (`benchmarks/roofline.py` documents
   the formula).
2. Batch-size sweep, in process, interleaved A, B, A, B: every runtime model through
   `BiLSTM.predict(texts, batch_size=B)` and the PyTorch baseline (`torch_baseline.py`:
   `inference_mode`, matched threads) both ways, exact-length groups without packing
   (`grouped`, the fair baseline) and length-sorted packed batches (`packed`), text in,
   probabilities out; plus the graphs alone (`session.run` on the padded length-sorted
   batches `bilstm-run` forms, PyTorch's `forward_exact` on pre-built grouped tensors). Each
   side's process runs then use its own best batch size.
3. Process runs on the dev file and a large file built from it: `bilstm-run` for each model
   (and with `--workers` where this bilstm has it) and the PyTorch script both ways, each a
   separate process started the same way, interleaved. Items/s over the whole process
   (start to exit: what a batch job sees) and over scoring alone (the summary line each side
   prints, after loading), ratios to the fair PyTorch row, share of the roofline.

Dev accuracy of every model comes from the sweep's predictions; the outputs of the last
process round are compared line by line (same labels, max probability difference).

    python -m benchmarks.throughput --threads 2
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c
from benchmarks import roofline
from benchmarks import torch_baseline as tb

NAME = "throughput"
SUMMARY = re.compile(r"(\d+) (?:lines|records), \d+ errors, ([\d.]+) s")
FAIR = "torch:grouped"


def scoring_seconds(stderr: str) -> float | None:
    """Seconds after loading, from the summary line both sides print."""
    found = SUMMARY.findall(stderr)
    return float(found[-1][1]) if found else None


def compare_outputs(a: Path, b: Path) -> dict[str, Any]:
    """Label agreement and max probability difference of two JSONL outputs."""
    same = total = 0
    max_diff = 0.0
    with a.open(encoding="utf-8") as fa, b.open(encoding="utf-8") as fb:
        for la, lb in zip(fa, fb, strict=True):
            ra, rb = json.loads(la), json.loads(lb)
            total += 1
            same += ra.get("label") == rb.get("label")
            pa, pb = ra.get("probabilities") or {}, rb.get("probabilities") or {}
            for key in pa:
                max_diff = max(max_diff, abs(pa[key] - pb.get(key, 0.0)))
    return {"lines": total, "same_label": same, "max_prob_diff": max_diff}


def runtime_has_workers() -> bool:
    """Whether this bilstm-run has `--workers` (it arrived with issue #16)."""
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb"}
    try:
        done = subprocess.run(
            [c.bin_path("bilstm-run"), "--help"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return "--workers" in done.stdout


def variant_models(fp32: str) -> dict[str, str]:
    """Built-in relatives of the default model (`sentiment-int8`, a fast variant, ...)."""
    from bilstm.runtime.builtin import builtin_models

    return {name: name for name in builtin_models() if name.startswith(f"{fp32}-") and name != fp32}


def accuracy(gold: Sequence[str], labels: Sequence[str | None]) -> float:
    return sum(g == p for g, p in zip(gold, labels, strict=True)) / max(1, len(gold))


def sweep(
    models: dict[str, Any],
    torch_model: tb.TorchClassifier,
    texts: Sequence[str],
    sizes: Sequence[int],
    rounds: int,
) -> dict[str, Any]:
    """Items/s per case and batch size, in process, interleaved; best batch size per case."""
    import numpy as np
    import torch

    fp32 = models[next(iter(models))]
    encoded = fp32.encode(list(texts))
    ids = torch_model.encode(texts)
    cases: dict[str, Callable[[], Any]] = {}
    for bs in sizes:
        for name, m in models.items():
            cases[f"runtime:{name}|{bs}"] = lambda m=m, bs=bs: m.predict(texts, batch_size=bs)
        for mode in tb.MODES:
            cases[f"torch:{mode}|{bs}"] = lambda mode=mode, bs=bs: torch_model.predict(
                texts, bs, mode
            )
        # The graphs alone: ORT on bilstm-run's batches (length-sorted, padded), PyTorch on
        # the grouped tensors, both pre-built.
        order = sorted((i for i, e in enumerate(encoded) if e), key=lambda i: -len(encoded[i]))
        feeds = []
        for b in range(0, len(order), bs):
            part = order[b : b + bs]
            width = len(encoded[part[0]])
            x = np.zeros((len(part), width), dtype=np.int64)
            for r, i in enumerate(part):
                x[r, : len(encoded[i])] = encoded[i]
            feeds.append(
                {"input_ids": x, "lengths": np.array([len(encoded[i]) for i in part], np.int64)}
            )
        session = fp32.session
        cases[f"graph:onnxruntime|{bs}"] = lambda feeds=feeds, s=session: [
            s.run(None, f) for f in feeds
        ]
        tensors = [x for _, x, _ in tb.batches(ids, bs, "grouped")]

        def torch_graph(tensors: list[Any] = tensors) -> None:
            with torch.inference_mode():
                for x in tensors:
                    tb.forward_exact(torch_model.net, x)

        cases[f"graph:torch|{bs}"] = torch_graph
    for fn in cases.values():  # warm-up
        fn()
    times = c.interleave(cases, rounds)
    items = sum(1 for e in encoded if e)
    table: dict[str, dict[str, float]] = {}
    for key, xs in times.items():
        case, bs = key.split("|")
        table.setdefault(case, {})[bs] = items / c.median(xs)
    best = {case: int(max(row, key=row.__getitem__)) for case, row in table.items()}
    return {"items": items, "batch_sizes": list(sizes), "items_per_s": table, "best": best}


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, (__doc__ or "").splitlines()[0])
    c.add_asset_options(p)
    p.add_argument(
        "--variants",
        default="auto",
        help="more runtime models, comma-separated (auto: the default model's built-in "
        "relatives such as sentiment-int8; none: no others)",
    )
    p.add_argument("--big-lines", type=int, default=50_000, help="size of the large file")
    p.add_argument("--rounds", type=int, default=5, help="process rounds on the dev file")
    p.add_argument("--big-rounds", type=int, default=3, help="process rounds on the large file")
    p.add_argument("--sweep", default="32,64,128,256", help="batch sizes to sweep")
    p.add_argument("--sweep-rounds", type=int, default=3)
    p.add_argument("--sweep-repeat", type=int, default=2, help="dev texts repeated in the sweep")
    p.add_argument("--workers", default="auto", help="bilstm-run --workers N rows (auto: 2)")
    p.add_argument("--gemm-n", type=int, default=2048)
    args = p.parse_args(argv)
    if args.smoke:
        args.big_lines, args.rounds, args.big_rounds = min(args.big_lines, 150), 1, 1
        args.sweep, args.sweep_rounds, args.sweep_repeat, args.gemm_n = "8,16", 1, 1, 256
    machine = c.machine_info(args.wait_quiet)
    assets = c.resolve_assets(args)
    data = c.read_tsv(assets.data)
    texts, gold = [t for _, t in data], [g for g, _ in data]

    from bilstm.runtime import BiLSTM

    fp32_name = Path(args.model).stem if args.model else c.SHIPPED_MODEL
    runtime_models: dict[str, str] = {fp32_name: str(assets.model)}
    if args.variants == "auto":
        if args.model is None and not args.smoke:
            runtime_models.update(variant_models(c.SHIPPED_MODEL))
    elif args.variants != "none":
        for v in args.variants.split(","):
            runtime_models[Path(v).stem] = v
    loaded = {
        name: BiLSTM.load(path, device="cpu", threads=args.threads)
        for name, path in runtime_models.items()
    }
    torch_model = tb.load_classifier(assets.checkpoint, args.threads)

    # 1. Roofline.
    peak = roofline.gemm_peak(args.threads, args.gemm_n, 10 if not args.smoke else 1)
    profiles = {name: roofline.model_profile(path, texts) for name, path in runtime_models.items()}
    print(
        f"GEMM peak {peak['peak_gflops']:.1f} GFLOP/s; "
        + ", ".join(f"{k} {v['flops_per_item'] / 1e6:.2f} MFLOP/item" for k, v in profiles.items()),
        file=sys.stderr,
    )

    # 2. Batch-size sweep, in process; dev accuracy of every model.
    sizes = [int(x) for x in args.sweep.split(",")]
    swept = sweep(loaded, torch_model, texts * args.sweep_repeat, sizes, args.sweep_rounds)
    print(f"best batch sizes: {swept['best']}", file=sys.stderr)
    acc = {name: accuracy(gold, [x.label for x in m.predict(texts)]) for name, m in loaded.items()}
    torch_probs = torch_model.predict(texts, 64, "grouped")
    acc["torch"] = accuracy(
        gold,
        [None if pr is None else torch_model.labels[pr.index(max(pr))] for pr in torch_probs],
    )

    # 3. Process runs.
    work = Path(tempfile.mkdtemp(prefix="bilstm-bench-"))
    files = {"dev": (c.write_lines(texts, work / "dev.txt"), args.rounds)}
    if args.big_lines:
        files["big"] = (c.write_lines(texts, work / "big.txt", args.big_lines), args.big_rounds)
    if args.smoke:
        files = {"big": files["big"]} if args.big_lines else files
    n = str(args.threads)
    workers = [] if args.workers in ("none", "0") else [2]
    if args.workers not in ("auto", "none", "0"):
        workers = [int(x) for x in args.workers.split(",")]
    if workers and not runtime_has_workers():
        print("this bilstm-run has no --workers: those rows are skipped", file=sys.stderr)
        workers = []

    def sides(path: Path, label: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, model in runtime_models.items():
            bs = swept["best"][f"runtime:{name}"]
            # --workers rows keep the total thread count: W processes x threads/W each.
            variants = [(name, [], n)] + [
                (
                    f"{name} --workers {w} --threads {max(1, args.threads // w)}",
                    ["--workers", str(w)],
                    str(max(1, args.threads // w)),
                )
                for w in workers
            ]
            for row, extra, threads in variants:
                dest = work / f"{label}.{len(out)}.jsonl"
                cmd = [
                    c.bin_path("bilstm-run"),
                    model,
                    str(path),
                    "--threads",
                    threads,
                    "--batch-size",
                    str(bs),
                    "--device",
                    "cpu",
                    "--output",
                    str(dest),
                    *extra,
                ]
                out[f"runtime:{row}"] = {
                    "cmd": cmd,
                    "out": dest,
                    "batch_size": bs,
                    "model": name,
                }
        for mode in tb.MODES:
            bs = swept["best"][f"torch:{mode}"]
            dest = work / f"{label}.torch-{mode}.jsonl"
            cmd = [
                sys.executable,
                str(c.TORCH_BASELINE),
                str(assets.checkpoint),
                str(path),
                "--threads",
                n,
                "--batch-size",
                str(bs),
                "--mode",
                mode,
                "--output",
                str(dest),
            ]
            out[f"torch:{mode}"] = {"cmd": cmd, "out": dest, "batch_size": bs, "model": fp32_name}
        return out

    results: dict[str, Any] = {}
    for label, (path, rounds) in files.items():
        plan = sides(path, label)
        runs: dict[str, list[c.ProcessRun]] = {k: [] for k in plan}

        def side(key: str, plan: dict[str, Any] = plan, runs: Any = runs) -> float:
            cmd = plan[key]["cmd"]
            run = c.check(c.run_process(cmd), cmd)
            runs[key].append(run)
            return run.wall_s

        c.interleave({key: (lambda key=key: side(key)) for key in plan}, rounds, self_timed=True)
        lines = len(path.read_text(encoding="utf-8").splitlines())
        rows: dict[str, Any] = {}
        for key, rs in runs.items():
            walls = [r.wall_s for r in rs]
            scoring = [s for s in (scoring_seconds(r.stderr) for r in rs) if s]
            e2e = lines / c.median(walls)
            only = lines / c.median(scoring) if scoring else None
            flops = profiles[plan[key]["model"]]["flops_per_item"]
            rows[key] = {
                "model": plan[key]["model"],
                "batch_size": plan[key]["batch_size"],
                "command": plan[key]["cmd"],
                "wall_s": c.summary(walls),
                "items_per_s_e2e": e2e,
                "scoring_s": c.summary(scoring) if scoring else None,
                "items_per_s_scoring": only,
                "roofline_share_scoring": roofline.share(only, peak["peak_gflops"], flops),
                "roofline_share_e2e": roofline.share(e2e, peak["peak_gflops"], flops),
            }
        fair = rows[FAIR]
        for row in rows.values():
            row["ratio_e2e"] = c.ratio(row["items_per_s_e2e"], fair["items_per_s_e2e"])
            row["ratio_scoring"] = c.ratio(row["items_per_s_scoring"], fair["items_per_s_scoring"])
        first = f"runtime:{fp32_name}"
        outputs = {
            f"{first} vs {FAIR}": compare_outputs(plan[first]["out"], plan[FAIR]["out"]),
            f"torch:packed vs {FAIR}": compare_outputs(
                plan["torch:packed"]["out"], plan[FAIR]["out"]
            ),
        }
        for key in plan:
            if key.startswith("runtime:") and key != first:
                outputs[f"{key} vs {first}"] = compare_outputs(plan[key]["out"], plan[first]["out"])
        results[label] = {"lines": lines, "rounds": rounds, "rows": rows, "outputs": outputs}
        print(
            f"{label}: "
            + ", ".join(
                f"{k} {v['items_per_s_scoring'] or 0:,.0f}/s ({v['ratio_scoring'] or 0:.2f}x)"
                for k, v in rows.items()
            ),
            file=sys.stderr,
        )
    # The peak again at the end, the best of both kept: a busy moment lowers one of them.
    peak = roofline.best_of(
        peak, roofline.gemm_peak(args.threads, args.gemm_n, 10 if not args.smoke else 1)
    )
    for f in results.values():
        for row in f["rows"].values():
            flops = profiles[row["model"]]["flops_per_item"]
            for kind in ("scoring", "e2e"):
                row[f"roofline_share_{kind}"] = roofline.share(
                    row[f"items_per_s_{kind}"], peak["peak_gflops"], flops
                )
    c.save(
        NAME,
        args,
        argv,
        {
            "fair_baseline": FAIR,
            "torch_source": str(assets.checkpoint),
            "models": runtime_models,
            "roofline": {
                "gemm": peak,
                "profiles": profiles,
                "limit_items_per_s": {
                    k: roofline.limit_items_per_s(peak["peak_gflops"], v["flops_per_item"])
                    for k, v in profiles.items()
                },
            },
            "sweep": swept,
            "dev_accuracy": acc,
            "workers": workers,
            "files": results,
        },
        machine,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
