"""Browser speed: examples/web's own timing in headless Chromium (onnxruntime-web, wasm) with 1
thread and with all threads, next to the Python runtime on the same sentences in the same run.

For each model the page loads (standalone `sentiment`, fp32, and `pos-en`, int8), three sides
score the same texts, one text and 100 texts as one batch:

- browser: the page's `timeModel` (examples/web/bilstm-web.js): `session.run` on the standalone
  file in onnxruntime-web, median of `--repeats` runs after 3 warm-ups, timed by the page
  with `performance.now()` (no WebDriver round trip inside the timing). The page is served by
  examples/web/serve.py with cross-origin isolation, so wasm threads are available; it is
  loaded once per thread count (`?threads=N`).
- native: ONNX Runtime's CPU provider in Python on the same standalone file (what the wasm
  build is to the native one: same graph, same inputs).
- bilstm-run: `BiLSTM.load(NAME).predict(texts, batch_size=len(texts))` on the built-in model:
  bilstm-run's scoring path (Python tokenizer + id graph), without process start.

Rounds alternate browser(1), native(1), bilstm-run(1), browser(N), native(N), bilstm-run(N).
Texts: the first 100 of `--data` (default rt_sentiment dev; examples/reviews.txt when that file
is absent), the single text is the first of them. Needs selenium, Chromium and chromedriver
(Debian's chromium, chromium-driver) and `npm ci` in examples/web.

    flock /tmp/bilstm-bench.lock python -m benchmarks.web
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _common as c
from tests.helpers import browser

NAME = "web"
WEB = c.REPO / "examples" / "web"
MODELS = {"sentiment": "sentiment", "pos": "pos-en"}  # page name -> built-in model


def _texts(path: Path | None, count: int) -> tuple[list[str], str]:
    source = path or (c.SHARED_DEV if c.SHARED_DEV.exists() else None)
    if source is None:
        lines = (c.REPO / "examples" / "reviews.txt").read_text(encoding="utf-8").splitlines()
        texts, name = [t for t in lines if t.strip()], "examples/reviews.txt"
    else:
        texts, name = [t for _, t in c.read_tsv(source)], source.name
    return [texts[i % len(texts)] for i in range(count)], name


def _driver() -> Any:
    found = browser.binaries()
    if found is None:
        raise SystemExit(f"needs selenium, Chromium and chromedriver: {browser.MISSING}")
    driver = browser.chromium(*found)
    driver.set_script_timeout(600)
    return driver


def _serve() -> Any:
    spec = importlib.util.spec_from_file_location("web_serve", WEB / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.serve_in_thread(WEB)


def _browser_side(driver: Any, url: str, threads: int, texts: list[str], repeats: int) -> Any:
    driver.get(f"{url}?threads={threads}")
    deadline = time.monotonic() + 120
    while driver.execute_script("return document.body.dataset.state") not in ("ready", "error"):
        if time.monotonic() > deadline:
            raise SystemExit("the page did not load its models in 120 s")
        time.sleep(0.1)
    if driver.execute_script("return document.body.dataset.state") == "error":
        raise SystemExit(
            driver.execute_script("return document.getElementById('error').textContent")
        )
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.bilstmPage.benchmark(arguments[0], arguments[1]).then(done,"
        " (e) => done({error: String(e)}));",
        texts,
        repeats,
    )


def _timer(fn: Callable[[], Any], repeats: int) -> float:
    """Median milliseconds of `repeats` calls after 3 warm-ups (as the page times)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return c.median(times)


def _python_sides(threads: int, texts: list[str], repeats: int) -> dict[str, Any]:
    import onnxruntime as ort

    from bilstm.runtime import BiLSTM

    out: dict[str, Any] = {"native": {}, "bilstm_run": {}}
    for page_name, builtin in MODELS.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        file = WEB / "models" / f"{builtin}-standalone.onnx"
        session = ort.InferenceSession(str(file), opts, providers=["CPUExecutionProvider"])
        model = BiLSTM.load(builtin, device="cpu", threads=threads)
        native, api = {}, {}
        for case, batch in (("one", texts[:1]), ("batch", texts)):
            feed = {"text": np.array(batch, dtype=object)}
            native[case] = {
                "texts": len(batch),
                "median_ms": _timer(lambda f=feed, s=session: s.run(None, f), repeats),
            }
            api[case] = {
                "texts": len(batch),
                "median_ms": _timer(
                    lambda b=batch, m=model: m.predict(b, batch_size=len(b)), repeats
                ),
            }
        out["native"][page_name] = native
        out["bilstm_run"][page_name] = api
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="label<TAB>text TSV (rt_sentiment dev)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of all sides")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per case and side")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.repeats = 1, 2
    if not (WEB / "node_modules" / "onnxruntime-web").is_dir():
        raise SystemExit("run `npm ci` in examples/web first")
    machine = c.machine_info(args.wait_quiet)
    texts, source = _texts(args.data, 100)
    server, url = _serve()
    driver = _driver()
    try:
        cores = int(driver.execute_script("return navigator.hardwareConcurrency"))
        counts = sorted({1, cores})
        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            for threads in counts:
                browser = _browser_side(driver, url, threads, texts, args.repeats)
                if "error" in browser:
                    raise SystemExit(f"the page's benchmark failed: {browser['error']}")
                python = _python_sides(threads, texts, args.repeats)
                rounds.append({"round": r, "threads": threads, "browser": browser, **python})
                print(f"round {r + 1}/{args.rounds}, {threads} thread(s) done", file=sys.stderr)
        user_agent = driver.execute_script("return navigator.userAgent")
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()

    table = []
    for threads in counts:
        mine = [x for x in rounds if x["threads"] == threads]
        for page_name, builtin in MODELS.items():
            for case in ("one", "batch"):

                def med(
                    side: str,
                    mine: list[dict[str, Any]] = mine,
                    pn: str = page_name,
                    cs: str = case,
                ) -> float:
                    return c.median([x[side][pn][cs]["median_ms"] for x in mine])

                browser, native, api = med("browser"), med("native"), med("bilstm_run")
                table.append(
                    {
                        "model": builtin,
                        "threads": threads,
                        "texts": 1 if case == "one" else len(texts),
                        "browser_ms": round(browser, 3),
                        "native_ort_ms": round(native, 3),
                        "bilstm_run_ms": round(api, 3),
                        "browser_over_native": round(browser / native, 2),
                        "browser_over_bilstm_run": round(browser / api, 2),
                    }
                )
    data = {
        "texts_source": source,
        "chromium": user_agent,
        "onnxruntime_web": rounds[0]["browser"]["onnxruntimeWeb"],
        "cross_origin_isolated": rounds[-1]["browser"]["crossOriginIsolated"],
        "table": table,
        "rounds": rounds,
    }
    c.save(NAME, args, argv, data, machine)
    for row in table:
        print(
            f"{row['model']:<9} threads {row['threads']} texts {row['texts']:>3}: browser "
            f"{row['browser_ms']:8.2f} ms, native {row['native_ort_ms']:8.2f} ms, bilstm-run "
            f"{row['bilstm_run_ms']:8.2f} ms ({row['browser_over_native']}x native)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
