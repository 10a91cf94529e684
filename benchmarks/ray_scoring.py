"""Ray Data scoring: items/s with 1 and 2 workers against plain `bilstm-run` on the same lines.

The lines are the texts of a TSV/text file (default `../shared/data/rt_sentiment/train.tsv`,
else the example reviews) repeated up to `--lines`. Per round, interleaved: `bilstm-run`
(a process: whole-process wall time, and the scoring time from its summary line), then Ray
`map_batches(BiLSTMPredictor)` with 1 and 2 workers on a local cluster started once
(`ray.init(num_cpus=CORES)`), timed from building the dataset to the last row collected
(actor start and model load included; `ray.init` is reported apart). The Ray outputs are
checked against `bilstm-run`'s (labels equal, largest probability difference). The 1-minute
load average is recorded before and after: the machines are shared.

    python benchmarks/ray_scoring.py --lines 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "rt_sentiment" / "train.tsv"
SUMMARY = re.compile(r"(\d+) records, \d+ errors, ([\d.]+) s")


def texts_of(path: Path) -> list[str]:
    """Texts of a `label<TAB>text` TSV (header skipped) or of a plain text file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".tsv":
        return [ln.split("\t", 1)[1] for ln in lines[1:] if "\t" in ln]
    return [ln for ln in lines if ln.strip()]


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def run_cli(model: str, src: Path, out: Path, threads: int | None) -> dict[str, float]:
    cmd = [str(Path(sys.executable).parent / "bilstm-run"), model, str(src), "-o", str(out)]
    if threads:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bilstm-run failed: {proc.stderr}")
    found = SUMMARY.findall(proc.stderr)
    return {"wall_s": wall, "scoring_s": float(found[-1][1])}


def run_ray(ray: Any, model: str, src: Path, workers: int, rows_per_batch: int) -> Any:
    from bilstm.runtime.frames import score_dataset

    start = time.perf_counter()
    ds = ray.data.read_text(str(src), drop_empty_lines=False)
    scored = score_dataset(
        ds, model, concurrency=workers, rows_per_batch=rows_per_batch, layout="json"
    )
    rows = scored.select_columns(["label", "probabilities"]).take_all()
    return time.perf_counter() - start, rows


def compare(rows: list[dict[str, Any]], cli_out: Path) -> dict[str, Any]:
    """Ray rows (in input order) against bilstm-run's records."""
    same = 0
    max_diff = 0.0
    with cli_out.open(encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh]
    for row, rec in zip(rows, records, strict=True):
        same += row["label"] == rec["label"]
        got = json.loads(row["probabilities"]) if row["probabilities"] else {}
        for lab, p in (rec["probabilities"] or {}).items():
            max_diff = max(max_diff, abs(got[lab] - p))
    return {"labels_equal": same == len(records), "max_abs_prob_diff": max_diff}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows-per-batch", type=int, default=4096)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    import ray
    import ray.data

    data = args.data or (DEFAULT_DATA if DEFAULT_DATA.exists() else REPO / "examples/reviews.txt")
    base = texts_of(data)
    texts = [base[i % len(base)] for i in range(args.lines)]
    result: dict[str, Any] = {
        "data": str(data),
        "lines": len(texts),
        "cores": args.cores,
        "cpu_count": os.cpu_count(),
        "ray": ray.__version__,
        "load_before": loadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="bilstm-ray-bench-") as tmp:
        src = Path(tmp) / "lines.txt"
        src.write_text("\n".join(texts) + "\n", encoding="utf-8")
        cli_out = Path(tmp) / "cli.jsonl"
        start = time.perf_counter()
        ray.init(
            num_cpus=args.cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR"
        )
        ray.data.DataContext.get_current().enable_progress_bars = False
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        result["ray_init_s"] = round(time.perf_counter() - start, 2)
        times: dict[str, list[float]] = {"cli_wall": [], "cli_scoring": []}
        for w in (1, 2):
            times[f"ray_{w}"] = []
        loads = []
        checks = {}
        for _ in range(args.rounds):
            cli = run_cli(args.model, src, cli_out, None)
            times["cli_wall"].append(cli["wall_s"])
            times["cli_scoring"].append(cli["scoring_s"])
            for w in (1, 2):
                seconds, rows = run_ray(ray, args.model, src, w, args.rows_per_batch)
                times[f"ray_{w}"].append(seconds)
                checks[f"ray_{w}"] = compare(rows, cli_out)
            loads.append(loadavg())
        ray.shutdown()
    result["load_per_round"] = loads
    result["load_after"] = loadavg()
    result["median_s"] = {k: round(statistics.median(v), 3) for k, v in times.items()}
    result["items_per_s"] = {k: round(len(texts) / statistics.median(v)) for k, v in times.items()}
    result["all_s"] = {k: [round(x, 3) for x in v] for k, v in times.items()}
    result["agreement"] = checks
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
