"""Render `benchmarks/RESULTS.md` from the JSON files in `benchmarks/results/`.

    python -m benchmarks.render [--results DIR] [--out FILE]

Hand-written analysis (why a target is missed, what to fix) lives in
`benchmarks/findings.md` and is appended as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c

ORDER = [
    "throughput",
    "latency",
    "coldstart",
    "kernels",
    "memory",
    "int8",
    "padding",
    "overlap",
    "export_time",
    "roofline",
    "profile_cli",
    "hotpath",
    "gpu",
]
FINDINGS = c.REPO / "benchmarks" / "findings.md"
# One file per topic whose benchmark writes no table of its own here (serve, web, ...),
# appended after findings.md in name order.
FINDINGS_DIR = c.REPO / "benchmarks" / "findings"


def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{digits}f}"
    return str(x)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += [
        "| " + " | ".join(fmt(v) if not isinstance(v, str) else v for v in row) + " |"
        for row in rows
    ]
    return [*out, ""]


def met(ok: bool | None) -> str:
    return "–" if ok is None else ("**met**" if ok else "**missed**")


def provenance(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    git = m.get("git", {})
    code = f"commit {git.get('commit')}" + (
        " + uncommitted changes" if git.get("code_dirty") else ""
    )
    return [
        f"Command: `{r['command']}`  ",
        f"Run {m['date']} on {m['cpu']} ({m['cores']} cores), {r['threads']} threads, "
        "load average (1/5/15 min) "
        f"{m['loadavg_start']} at start, {r['loadavg_end']} at end"
        + (f", run at nice {m['nice']}" if m.get("nice") else "")
        + f"; {code}.",
        "",
    ]


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def target_file(r: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The file the targets are judged on: the large one where there is one."""
    label = "big" if "big" in r["files"] else next(iter(r["files"]))
    return label, r["files"][label]


def row_kind(r: dict[str, Any], model: str) -> str:
    """fp32 (the default model), int8 (same dimensions, int8) or fast (other dimensions)."""
    profiles = r["roofline"]["profiles"]
    first = next(iter(r["models"]))
    if model == first:
        return "fp32"
    same = profiles[model]["dims"] == profiles[first]["dims"]
    if same and profiles[model]["precision"] == "int8":
        return "int8"
    return "fast" if not same else "other"


def best_row(rows: dict[str, Any], keys: list[str], measure: str) -> tuple[str, dict[str, Any]]:
    key = max(keys, key=lambda k: rows[k][measure] or 0.0)
    return key, rows[key]


def throughput_targets(r: dict[str, Any], summary: list[list[Any]]) -> None:
    """Issue #16's batch targets, judged against the fair PyTorch row on the large file."""
    label, f = target_file(r)
    rows = f["rows"]
    fair = rows[r["fair_baseline"]]
    kinds: dict[str, list[str]] = {}
    for key, row in rows.items():
        if key.startswith("runtime:"):
            kinds.setdefault(row_kind(r, row["model"]), []).append(key)
    acc = r["dev_accuracy"]
    first = next(iter(r["models"]))
    specs = [
        ("fp32", "items_per_s_scoring", "scoring only", 1.4),
        ("int8", "items_per_s_e2e", "whole process", 2.3),
        ("fast", "items_per_s_e2e", "whole process", 3.5),
    ]
    for kind, measure, what, target in specs:
        if kind not in kinds:
            summary.append([f"target: {kind} model, {what}", "not measured", "", "", "", "–"])
            continue
        key, row = best_row(rows, kinds[kind], measure)
        ratio = c.ratio(row[measure], fair[measure])
        ok = ratio is not None and ratio >= target
        extra = ""
        if kind == "fast":
            delta = 100 * (acc[row["model"]] - acc[first])
            ok = ok and delta >= -0.5
            extra = f"; dev accuracy {delta:+.2f} points (<= 0.5 lost)"
        summary.append(
            [
                f"target: `{key.removeprefix('runtime:')}` vs fair PyTorch, {label} file, "
                f"{r['threads']} thread(s), {what}, items/s{extra} "
                f"(run of {r['machine']['date'][:16].replace('T', ' ')} UTC)",
                row[measure],
                fair[measure],
                f"{fmt(ratio)}x",
                f">= {target}x",
                met(ok),
            ]
        )


# Best fp32 GEMM peak measured per thread count (GFLOP/s), from every result that measured
# one. A peak measured under load only understates the limit, so shares are taken against the
# best: otherwise a busy machine's low peak puts rows above 100% of "the roofline".
BEST_PEAK: dict[int, float] = {}


def note_peaks(docs: Sequence[dict[str, Any]]) -> None:
    for d in docs:
        g = d.get("gemm") or (d.get("roofline") or {}).get("gemm")
        if g and "peak_gflops" in g:
            t = int(g.get("threads") or d.get("threads") or 0)
            BEST_PEAK[t] = max(BEST_PEAK.get(t, 0.0), float(g["peak_gflops"]))


def _against_best_peak(r: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """The run's roofline with its limits rescaled to the best peak at its thread count,
    and the factor its own shares are multiplied by."""
    roof = r["roofline"]
    own = float(roof["gemm"]["peak_gflops"])
    best = max(own, BEST_PEAK.get(int(roof["gemm"].get("threads") or r["threads"]), own))
    limits = {k: v * best / own for k, v in roof["limit_items_per_s"].items()}
    return {**roof, "limit_items_per_s": limits, "best_peak": best}, own / best


def throughput(r: dict[str, Any], summary: list[list[Any]]) -> list[str]:
    if "rows" not in next(iter(r["files"].values())):
        return ["(an older result format: re-run `python -m benchmarks.throughput`)", ""]
    throughput_targets(r, summary)
    roof, share_scale = _against_best_peak(r)
    g = roof["gemm"]
    out = [
        f"PyTorch side: `benchmarks/torch_baseline.py` on `{Path(r['torch_source']).name}` "
        f"(the same weights), `inference_mode`, {r['threads']} threads; fair baseline = "
        f"`{r['fair_baseline']}` (exact-length groups, no packing); `torch:packed` is the "
        "model's packed `forward`. Ratios are against the fair row.",
        "",
        f"**Roofline.** fp32 GEMM peak ({g['n']}^3, {g['threads']} threads): "
        + ", ".join(f"{k} {v:.1f}" for k, v in g["gflops"].items())
        + " GFLOP/s"
        + (
            " (best of the start and end of the run: "
            + " / ".join(f"{m['onnxruntime_mlas']:.1f}" for m in g["measured"])
            + ")"
            if "measured" in g
            else ""
        )
        + f"; limit = ONNX Runtime's **{roof['best_peak']:.1f} GFLOP/s** (MLAS, the engine of "
        "every runtime row; the best peak measured at this thread count, here or by "
        "`benchmarks/roofline.py` alone, since a peak measured under load understates the "
        "limit). FLOPs per item = tokens_avg x sum over layers of "
        "2 directions x 2 x 4H x (I + H) + 2 x D x C (matrix products only; "
        "`benchmarks/roofline.py`). int8 rows are measured against the fp32 limit.",
        "",
    ]
    out += table(
        ["model", "precision", "tokens/item", "MFLOP/item", "limit items/s", "dev accuracy"],
        [
            [
                name,
                pr["precision"],
                pr["tokens_avg"],
                pr["flops_per_item"] / 1e6,
                roof["limit_items_per_s"][name],
                f"{r['dev_accuracy'].get(name, float('nan')):.4f}",
            ]
            for name, pr in roof["profiles"].items()
        ],
    )
    sw = r["sweep"]
    sizes = [str(b) for b in sw["batch_sizes"]]
    out += [
        f"**Batch-size sweep** (in process, {sw['items']:,} texts, text in -> probabilities "
        "out; `graph:` rows are the graphs alone on pre-built batches), items/s; best in bold, "
        "and each side's process runs below use its best:",
        "",
    ]
    rows = []
    for case, by_bs in sw["items_per_s"].items():
        best = str(sw["best"][case])
        rows.append(
            [case] + [f"**{fmt(by_bs[b])}**" if b == best else fmt(by_bs[b]) for b in sizes]
        )
    out += table(["case", *[f"batch {b}" for b in sizes]], rows)
    first = next(iter(r["models"]))
    graph_best = {
        k: max(v.values()) for k, v in sw["items_per_s"].items() if k.startswith("graph:")
    }
    if "graph:onnxruntime" in graph_best and "graph:torch" in graph_best:
        out += [
            f"Graph ceiling (best batch each): ONNX Runtime {fmt(graph_best['graph:onnxruntime'])}"
            f" items/s against PyTorch {fmt(graph_best['graph:torch'])}: "
            f"{fmt(c.ratio(graph_best['graph:onnxruntime'], graph_best['graph:torch']))}x; "
            f"{pct(graph_best['graph:onnxruntime'] / roof['limit_items_per_s'][first])} of "
            "the roofline.",
            "",
        ]
    for label, f in r["files"].items():
        out += [f"**{label}** file, {f['lines']:,} lines, {f['rounds']} interleaved rounds:", ""]
        rows = [
            [
                key,
                v["batch_size"],
                v["items_per_s_e2e"],
                v["items_per_s_scoring"],
                f"{fmt(v['ratio_e2e'])}x",
                f"{fmt(v['ratio_scoring'])}x",
                pct(v["roofline_share_scoring"] * share_scale),
            ]
            for key, v in f["rows"].items()
        ]
        out += table(
            [
                "row",
                "batch",
                "whole process items/s",
                "scoring items/s",
                "whole process vs fair",
                "scoring vs fair",
                "scoring, share of roofline",
            ],
            rows,
        )
        out += [
            "Outputs: "
            + "; ".join(
                f"{k}: {v['same_label']:,}/{v['lines']:,} same labels, max prob diff "
                f"{v['max_prob_diff']:.6f}"
                for k, v in f["outputs"].items()
            )
            + ".",
            "",
        ]
    return out


def latency(r: dict[str, Any], summary: list[list[Any]]) -> list[str]:
    k = r["cases"]
    summary.append(
        [
            "2. single request p50 (ms)",
            k["runtime_predict"]["p50_ms"],
            k["torch_predict"]["p50_ms"],
            f"{fmt(r['ratio_p50'])}x",
            f"<= {r['target_ratio_p50']}x",
            met(r["ratio_p50"] <= r["target_ratio_p50"]),
        ]
    )
    summary.append(
        [
            "2. single request p99 (ms)",
            k["runtime_predict"]["p99_ms"],
            k["torch_predict"]["p99_ms"],
            f"{fmt(r['ratio_p99'])}x",
            "",
            "",
        ]
    )
    rows = [[name, v["p50_ms"], v["p99_ms"], v["mean_ms"], v["n"]] for name, v in k.items()]
    return [
        f'Request: {r["tokens"]} tokens, "{r["sentence"]}"',
        "",
        *table(["case", "p50 ms", "p99 ms", "mean ms", "calls"], rows),
    ]


def coldstart(r: dict[str, Any], summary: list[list[Any]]) -> list[str]:
    w = r["wall_s"]
    ok = w["runtime"]["median"] <= r["target_s"]
    if r.get("target_ratio") is not None:
        ok = ok and r["ratio"] <= r["target_ratio"]
    summary.append(
        [
            "3. cold start, one line (s)",
            w["runtime"]["median"],
            w["torch"]["median"],
            f"{fmt(r['ratio'])}x",
            f"<= {r['target_s']} s"
            + (f" and <= {r['target_ratio']}x" if r.get("target_ratio") is not None else ""),
            met(ok),
        ]
    )
    cpu = r.get("cpu_s", {})
    out = []
    if "bytecode" in r:
        out += [
            f"bilstm's own modules: {r['bytecode']} (as pip leaves an installed package "
            "unless said otherwise); environment: "
            + ", ".join(
                f"{k}={'unset' if v is None else v}" for k, v in r.get("environment", {}).items()
            ),
            "",
        ]
    out += table(
        ["side", "median s", "min s", "max s", "runs", "CPU median s", "peak RSS MiB"],
        [
            [
                k,
                v["median"],
                v["min"],
                v["max"],
                v["n"],
                cpu.get(k, {}).get("median"),
                r["max_rss_mib"].get(k),
            ]
            for k, v in w.items()
        ],
    )
    if "breakdown_wall_s" in r:
        bcpu = r.get("breakdown_cpu_s", {})
        out += ["What a bare process costs (median):", ""]
        out += table(
            ["command", "wall s", "CPU s"],
            [
                [k, v["median"], bcpu.get(k, {}).get("median")]
                for k, v in r["breakdown_wall_s"].items()
            ],
        )
        out += [
            "Import time of a one-line `bilstm-run` by package (`python -X importtime`, "
            "sum of self times; bilstm's own modules by name):",
            "",
        ]
        out += table(["package", "ms"], [[x["module"], x["self_ms"]] for x in r["slowest_imports"]])
    return out


def kernels(r: dict[str, Any], summary: list[list[Any]]) -> list[str]:
    g = r["gemm"]
    out = [
        f"fp32 GEMM peak of this machine ({g['n']}x{g['n']}, {r['threads']} threads): "
        + ", ".join(f"{k} {v:.1f}" for k, v in g["gflops"].items())
        + f" GFLOP/s; peak = **{g['peak_gflops']:.1f} GFLOP/s** ({g['peak_by']}).",
        "",
    ]
    if r.get("openvino_skipped"):
        out += [f"OpenVINO skipped: {r['openvino_skipped']}.", ""]
    engines = list(r["configs"][0]["engines"])
    rows = []
    for cfg in r["configs"]:
        for name in engines:
            e = cfg["engines"][name]
            rows.append(
                [
                    cfg["batch"],
                    cfg["length"],
                    name,
                    e["ms"],
                    e["gflops"],
                    f"{100 * e['fraction_of_peak']:.0f}%",
                    f"{e['speedup_vs_torch']:.2f}x",
                    f"{e['max_abs_diff_vs_torch']:.1e}",
                ]
            )
    m = r["model"]
    out.append(
        f"Model: {m['layers']}-layer BiLSTM, input {m['input_size']}, hidden {m['hidden']}; "
        f"files fp32 {r['files_bytes']['fp32'] / 2**20:.1f} MiB, int8 "
        f"{r['files_bytes']['int8'] / 2**20:.1f} MiB."
    )
    out.append("")
    for cfg in r["configs"]:
        e = cfg["engines"]
        summary.append(
            [
                f"4. kernel b={cfg['batch']} t={cfg['length']} (ms)",
                e["ort_fp32"]["ms"],
                e["torch_eager"]["ms"],
                f"{fmt(e['torch_eager']['ms'] / e['ort_fp32']['ms'])}x speed",
                "–",
                "–",
            ]
        )
    return out + table(
        ["batch", "length", "engine", "ms", "GFLOP/s", "of peak", "vs PyTorch", "max diff"], rows
    )


def memory(r: dict[str, Any], summary: list[list[Any]]) -> list[str]:
    runs = r["runs"]
    summary.append(
        [
            f"5. peak RSS {runs['small']['lines']:,} -> {runs['large']['lines']:,} lines (MiB)",
            f"{fmt(runs['small']['max_rss_mib'])} -> {fmt(runs['large']['max_rss_mib'])}",
            fmt(runs.get("torch_small", {}).get("max_rss_mib")),
            f"{fmt(r['rss_growth'])}x growth",
            "flat",
            met(r["flat"]),
        ]
    )
    out = table(
        ["run", "lines", "peak RSS MiB", "wall s"],
        [[k, v["lines"], v["max_rss_mib"], v["wall_s"]] for k, v in runs.items()],
    )
    inst = r.get("install")
    if inst:
        rt, th = inst["runtime_only"], inst["with_torch"]
        summary.append(
            [
                "5. installed size (site-packages MiB)",
                rt["site_packages_mib"],
                th["site_packages_mib"],
                f"{fmt(c.ratio(rt['site_packages_mib'], th['site_packages_mib']))}x",
                "–",
                "–",
            ]
        )
        out += table(
            ["environment", "pip install", "site-packages MiB", "largest entries"],
            [
                [
                    name,
                    " ".join(Path(x).name if "/" in x else x for x in v["pip_install"]),
                    v["site_packages_mib"],
                    ", ".join(f"{e['name']} {e['mib']}" for e in v["largest"][:4]),
                ]
                for name, v in (("runtime only", rt), ("with torch", th))
            ],
        )
    return out


def int8(r: dict[str, Any], summary: list[list[Any]]) -> list[str]:
    m = r["models"]
    summary.append(
        [
            "6. int8 vs fp32 items/s",
            m["int8"]["items_per_s"],
            m["fp32"]["items_per_s"],
            f"{fmt(r['speedup_batch'])}x",
            "–",
            "–",
        ]
    )
    summary.append(
        [
            "6. int8 accuracy delta",
            m["int8"]["accuracy"],
            m["fp32"]["accuracy"],
            f"{r['accuracy_delta']:+.4f}",
            "–",
            "–",
        ]
    )
    rows = [
        [
            k,
            v["file_bytes"] / 2**20,
            v["items_per_s"],
            v["p50_ms_single"],
            v["accuracy"],
            v["macro_f1"],
        ]
        for k, v in m.items()
    ]
    return [
        f"int8 made by: {r['method']}.",
        "",
        *table(["model", "file MiB", "items/s", "p50 ms (1 text)", "accuracy", "macro-F1"], rows),
        f"Labels changed by int8: {r['labels_changed']} of {r['items']}; largest probability "
        f"change {r['max_prob_diff']:.4f}; file {fmt(r['size_ratio'])}x the fp32 size.",
        "",
    ]


def padding(r: dict[str, Any], summary: list[list[Any]]) -> list[str]:
    summary.append(
        [
            "7. length bucketing on/off (runtime items/s)",
            r["cases"]["runtime_bucketed"]["items_per_s"],
            r["cases"]["runtime_file_order"]["items_per_s"],
            f"{fmt(r['speedup_bucketing_runtime'])}x",
            "–",
            "–",
        ]
    )
    rows = [[k, v["items_per_s"], v["s"]["median"]] for k, v in r["cases"].items()]
    pf = r["padding_fraction"]
    return [
        f"{r['items']:,} texts, {r['tokens']:,} tokens, batch {r['batch_size']}; padded "
        f"slots: bucketed {pf['bucketed']:.1%}, file order {pf['file_order']:.1%}.",
        "",
        *table(["case", "items/s", "median s per pass"], rows),
    ]


def overlap(r: dict[str, Any], summary: list[list[Any]]) -> list[str]:
    rows = [
        [
            threads,
            v["items_per_s"]["serial"],
            v["items_per_s"]["overlapped"],
            f"{fmt(v['speedup'])}x",
        ]
        for threads, v in r["by_threads"].items()
    ]
    return [
        f"{r['texts']:,} texts in chunks of {r['chunk']:,}; items/s through the Python API.",
        "",
        *table(["ORT threads", "serial", "overlapped", "speed-up"], rows),
    ]


def export_time(r: dict[str, Any], summary: list[list[Any]]) -> list[str]:
    t = r["in_process_s"]
    if "2_layers" in t:
        summary.append(
            [
                "export, 2-layer model, in process (s)",
                t["2_layers"]["median"],
                "",
                "",
                "seconds",
                "–",
            ]
        )
    rows = [[k, v["median"], v["min"], v["max"]] for k, v in t.items()]
    out = table(["export", "median s", "min s", "max s"], rows)
    if "cli_2_layers_wall_s" in r:
        out += [
            f"`bilstm export` of the 2-layer checkpoint, whole command: "
            f"{r['cli_2_layers_wall_s']['median']:.2f} s (median wall).",
            "",
        ]
    return out


def roofline_section(r: dict[str, Any], summary: list[list[Any]]) -> list[str]:
    g, pr = r["gemm"], r["profile"]
    return [
        f"fp32 GEMM ({g['n']}^3, best of {g['reps']}, {g['threads']} threads): "
        + ", ".join(f"{k} {v:.1f}" for k, v in g["gflops"].items())
        + f" GFLOP/s. `{pr['model']}` on the data: {pr['tokens_avg']:.2f} tokens per item, "
        f"{pr['flops_per_item'] / 1e6:.2f} MFLOP per item, so at most "
        f"**{fmt(r['limit_items_per_s'])} items/s** on this machine at this thread count.",
        "",
    ]


def profile_cli(r: dict[str, Any], summary: list[list[Any]]) -> list[str]:
    cmd = " ".join(Path(x).name if "/" in x else x for x in r["profiled_command"])
    out = [
        f"`{cmd}` ({r['lines']:,} lines) under `py-spy record`, {r['samples']:,} samples; "
        "a sample counts for the first stage on its stack:",
        "",
        *table(["stage", "share"], [[k, pct(v)] for k, v in r["stages"].items()]),
        "Functions by own (leaf) samples:",
        "",
        *table(
            ["function", "share"], [[x["function"], pct(x["share"])] for x in r["top_functions"]]
        ),
    ]
    return out


def gpu(r: dict[str, Any], summary: list[list[Any]]) -> list[str]:
    if "skipped" in r:
        return [f"Skipped on this machine: {r['skipped']}.", ""]
    m = r["machine"]
    v = m["versions"]
    out = [
        f"GPU: {m.get('gpu')}; host CPU {m['cpu']} ({m['cores']} cores); onnxruntime-gpu "
        f"{v.get('onnxruntime-gpu')}, torch {v.get('torch')}; PyTorch cuDNN TF32 "
        f"{fmt(m.get('torch_cudnn_allow_tf32'))}, matmul TF32 "
        f"{fmt(m.get('torch_matmul_allow_tf32'))}; {m['date']}.",
        "",
    ]
    for name in ("parity", "kernel", "binding", "scoring"):
        section = r.get(name)
        if isinstance(section, dict):  # failed or skipped: say so rather than drop it
            out += [f"{name}: {section.get('failed') or section.get('skipped')}", ""]
    if isinstance(r.get("parity"), list):
        out += [
            "Parity on CUDA vs PyTorch fp32 on the CPU (ragged random batches up to 512 rows "
            "and the checkpoint's dev examples); scaled = |diff| / (1 + |value|):",
            "",
            *table(
                ["model", "variant", "CUDA options", "output", "max abs diff", "max scaled"],
                [
                    [
                        p["model"],
                        p["variant"],
                        p["cuda_options"],
                        o,
                        f"{d['max_abs']:.1e}",
                        f"{d['max_scaled']:.1e}",
                    ]
                    for p in r["parity"]
                    for o, d in p["outputs"].items()
                ],
            ),
        ]
    if isinstance(r.get("kernel"), list):
        rows = [
            [
                k["batch"],
                k["length"],
                k["ms"]["ort_fp32"],
                k["ms"]["torch_fp32"],
                f"{k['speedup_vs_torch']['fp32']:.2f}x",
                k["ms"]["ort_fp16"],
                k["ms"]["torch_fp16"],
                f"{k['speedup_vs_torch']['fp16']:.2f}x",
                f"{k['max_abs_diff_vs_torch']['fp32']:.1e} / "
                f"{k['max_abs_diff_vs_torch']['fp16']:.1e}",
            ]
            for k in r["kernel"]
        ]
        out += [
            "Kernel (2-layer BiLSTM, input 300, hidden 256), ms per call; speed-up = PyTorch "
            "time / ORT time:",
            "",
            *table(
                [
                    "batch",
                    "length",
                    "ORT fp32",
                    "PyTorch fp32",
                    "speed-up",
                    "ORT fp16",
                    "PyTorch fp16",
                    "speed-up",
                    "max diff fp32 / fp16",
                ],
                rows,
            ),
        ]
    if isinstance(r.get("binding"), list):
        out += [
            "`BiLSTM.run` on the shipped sentiment model, I/O binding off vs on (ms per call):",
            "",
            *table(
                ["batch", "session.run", "I/O binding", "binding speed-up"],
                [
                    [b["batch"], b["ms"]["plain"], b["ms"]["bound"], f"{b['bound_speedup']:.2f}x"]
                    for b in r["binding"]
                ],
            ),
        ]
    if isinstance(r.get("scoring"), list):
        out += [
            "End-to-end scoring (`predict` on CUDA vs the PyTorch checkpoint on CUDA, same "
            "tokenizer and batches), items/s:",
            "",
            *table(
                [
                    "batch size",
                    "texts",
                    "runtime CUDA",
                    "runtime CUDA, TF32",
                    "PyTorch CUDA",
                    "ratio",
                ],
                [
                    [
                        s["batch_size"],
                        s["items"],
                        s["items_per_s"]["runtime_cuda"],
                        s["items_per_s"].get("runtime_cuda_tf32"),
                        s["items_per_s"]["torch_cuda"],
                        f"{s['ratio']:.2f}x",
                    ]
                    for s in r["scoring"]
                ],
            ),
        ]
    return out


def hotpath(r: dict[str, Any], summary: list[list[Any]]) -> list[str]:
    sh = r["share"]
    out = [
        f"Same {sh['lines']:,} lines, same {sh['batches']} padded batches, one process: "
        f"`bilstm-run`'s loop (read, tokenise, pad, `session.run`, records, write) "
        f"{fmt(sh['loop_items_per_s'])} items/s against bare `session.run` "
        f"{fmt(sh['bare_items_per_s'])} items/s: **share {sh['share']:.2f}** "
        f"(target {sh['target_share']:.2f}).",
        "",
        f"Whole `bilstm-run` processes on {r['workers']['lines']:,} lines (workers x threads "
        "each; medians):",
        "",
    ]
    rows = [
        [
            name,
            v["items_per_s_e2e"],
            v["items_per_s_scoring"],
            v["same_output_as_first"],
        ]
        for name, v in r["workers"]["configs"].items()
    ]
    out += table(
        [
            "workers x threads",
            "whole process items/s",
            "scoring items/s",
            "same output",
        ],
        rows,
    )
    return out


SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any], list[list[Any]]], list[str]]]] = {
    "throughput": (
        "1. Batch scoring: `bilstm-run` vs a fair PyTorch baseline, with the roofline",
        throughput,
    ),
    "latency": ("2. Single-request latency (Python API, warm)", latency),
    "coldstart": ("3. Cold start: one line, process start to output", coldstart),
    "kernels": ("4. Kernel efficiency: 2-layer BiLSTM, input 300, hidden 256", kernels),
    "memory": ("5. Memory: peak RSS and installed size", memory),
    "int8": ("6. int8 vs fp32, shipped sentiment model", int8),
    "padding": ("7. Padding waste: length bucketing on vs off", padding),
    "overlap": ("Overlapping preparation with inference", overlap),
    "export_time": ("Export time", export_time),
    "roofline": ("Roofline: fp32 GEMM peak and FLOPs per item", roofline_section),
    "profile_cli": ("Where `bilstm-run`'s time goes (py-spy)", profile_cli),
    "hotpath": ("The scoring loop against bare `session.run`; `--workers`", hotpath),
    "gpu": ("GPU (CUDA)", gpu),
}


def render(results: dict[str, list[dict[str, Any]]]) -> str:
    docs = [d for ds in results.values() for d in ds]
    first = max(docs, key=lambda d: d["machine"]["date"])["machine"]  # the latest run's
    v = first["versions"]
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks.render` from `benchmarks/results/*.json` (do not edit "
        "by hand; the analysis at the end comes from `benchmarks/findings.md` and "
        "`benchmarks/findings/`). Every comparison ran both sides on this machine in the same "
        "run, with the same weights and thread count, interleaved A, B, A, B; medians and "
        "ratios (runtime / PyTorch unless said). The PyTorch side is the fair baseline of "
        "issue #16: `inference_mode`, matched threads, exact-length groups without packing, "
        "its own best batch size.",
        "",
        f"**Machine** (latest run; each section names its own CPU): {first['cpu']}, "
        f"{first['cores']} cores, {first['memory_gib']} GiB, "
        f"{first['os']}, Python {first['python']}. Versions: "
        + ", ".join(f"{k} {val}" for k, val in v.items() if val)
        + ".  ",
        f"**Code measured**: `{first['bilstm_source']}`. Dates: "
        + ", ".join(sorted({r["machine"]["date"][:10] for r in docs}))
        + ".",
        "",
    ]
    summary: list[list[Any]] = []
    body: list[str] = []
    for name in ORDER:
        docs = results.get(name, [])
        for r in docs:  # several results of one benchmark: e.g. at 2 threads and at 1
            title, fn = SECTIONS[name]
            if len(docs) > 1:
                title += f" ({r['threads']} thread{'s' if r['threads'] != 1 else ''})"
            body += [f"## {title}", "", *provenance(r), *fn(r, summary)]
    lines += ["## Summary", ""]
    lines += table(["workload", "bilstm runtime", "PyTorch", "ratio", "target", "status"], summary)
    lines += body
    for path in [FINDINGS, *sorted(FINDINGS_DIR.glob("*.md"))]:
        if path.exists():
            lines += [path.read_text(encoding="utf-8").rstrip(), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.render", description=__doc__)
    p.add_argument("--results", type=Path, default=c.RESULTS_DIR)
    p.add_argument("--out", type=Path, default=c.REPO / "benchmarks" / "RESULTS.md")
    args = p.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(args.results.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and doc.get("benchmark") in SECTIONS:  # others are not ours
            results.setdefault(doc["benchmark"], []).append(doc)
    for docs in results.values():
        docs.sort(key=lambda d: -int(d.get("threads") or 0))
        note_peaks(docs)
    if not results:
        print(f"no results in {args.results}", file=sys.stderr)
        return 1
    args.out.write_text(render(results), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
