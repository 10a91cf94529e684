"""`bilstm serve`: task records byte-identical to `bilstm-run`, the Open Inference Protocol
through tritonclient, bad input, dynamic batching, metrics, limits, API key, SIGTERM.

Servers run as subprocesses of the real `bilstm` entry point, bound to 127.0.0.1 on a free
port (`--port 0`, the port read from the start-up line); every request loop is bounded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from helpers.cli import bilstm  # noqa: E402

from bilstm.core.reader import DEFAULT_MAX_LINE_BYTES  # noqa: E402
from bilstm.runtime.model import BiLSTM  # noqa: E402
from bilstm.runtime.output import _JsonLine  # noqa: E402
from bilstm.runtime.taskspec import RunOptions  # noqa: E402

MODELS = ["sentiment", "sentiment-int8", "pos-en", "cloze-en", "elecdemand-h1"]
TEXTS = [
    "A gorgeous, witty, seductive movie that never lets up.",
    "The plot is thin, the acting wooden and the jokes fall flat.",
    "",
    'Ünïcödé «quotes» and "escapes" \\ \t tabs, emoji 🎬 ___ .',
    "I like my eggs ___ and scrambled .",
    "word " * 300,
]
START_LINE = re.compile(r"on http://127\.0\.0\.1:(\d+) ")


class Served:
    """A `bilstm serve` subprocess; its stderr lines are collected by a thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        cmd = [sys.executable, "-c", "from bilstm.cli import main; main()", "serve", *args]
        self.proc = subprocess.Popen(
            cmd,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._port: list[int] = []
        self._started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._started.wait(120) or not self._port:
            self.stop()
            raise AssertionError(f"server did not start: {self.lines[-20:]}")
        self.url = f"http://127.0.0.1:{self._port[0]}"
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            match = START_LINE.search(line)
            if match and not self._port:
                self._port.append(int(match.group(1)))
                self._started.set()
        self._started.set()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    srv = Served(
        *MODELS,
        "--port=0",
        "--max-delay-ms=20",
        "--max-items=64",
        f"--max-body-bytes={1 << 20}",
        "--threads=1",
    )
    yield srv
    srv.client.close()
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def models() -> dict[str, BiLSTM]:
    return {name: BiLSTM.load(name, threads=1) for name in MODELS}


def expected_lines(model: BiLSTM, values: list[Any], **params: Any) -> list[str]:
    """Records of one request scored alone, in process, as the server writes them."""
    opts = RunOptions(model.batch_size, max_text_bytes=DEFAULT_MAX_LINE_BYTES, **params)
    records = model.value_records(values, opts)
    encode = _JsonLine()
    for i, record in enumerate(records):
        if "line" in record:
            record["line"] = i + 1
    return [encode(r) for r in records]


# -- the task endpoint ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "flags"),
    [
        ("sentiment", {}, []),
        ("sentiment", {"probabilities": False}, ["--no-probabilities"]),
        ("sentiment-int8", {}, []),
        ("pos-en", {"tokenize": "words"}, ["--tokenize", "words"]),
        ("cloze-en", {"top_k": 2}, ["--top-k", "2"]),
    ],
)
def test_predict_is_bilstm_run_byte_for_byte(
    server: Served, tmp_path: Path, name: str, params: dict[str, Any], flags: list[str]
) -> None:
    # int8 results depend on the batch: more texts than the server's usual rows per ORT call
    texts = TEXTS * 3 if name.endswith("-int8") else TEXTS
    src = tmp_path / "in.txt"
    src.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    # --threads 1 as the server: int8 kernels' results depend on the thread count too
    run = bilstm("run", name, src, "--quiet", "--threads", "1", *flags)
    assert run.exit_code in (0, 1), run.stderr  # 1: some lines are error records
    body = {"inputs": texts, "parameters": params}
    lines = server.client.post(
        f"/v1/models/{name}/predict", json=body, headers={"Accept": "application/x-ndjson"}
    )
    assert lines.status_code == 200, lines.text
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    assert lines.content == run.stdout.encode("utf-8")
    as_json = server.client.post(f"/v1/models/{name}/predict", json=body)
    assert as_json.status_code == 200
    assert as_json.json()["records"] == [json.loads(x) for x in run.stdout.splitlines()]
    for line in run.stdout.splitlines():  # each record's JSON, as bytes, in the object
        assert line.encode("utf-8") in as_json.content


def test_predict_forecast_matches_bilstm_run(
    server: Served, models: dict[str, BiLSTM], tmp_path: Path
) -> None:
    model = models["elecdemand-h1"]
    rng = np.random.default_rng(3)
    window = np.column_stack(
        [rng.uniform(3, 7, 48), rng.integers(0, 2, 48), rng.uniform(10, 30, 48)]
    ).round(3)
    csv = tmp_path / "w.csv"
    csv.write_text(
        ",".join(model.columns) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in window)
    )
    run = bilstm("run", "elecdemand-h1", csv, "--quiet", "--threads", "1")
    assert run.exit_code == 0, run.stderr
    want = json.loads(run.stdout)["forecast"]
    got = server.client.post(
        "/v1/models/elecdemand-h1/predict", json={"inputs": [window.tolist(), "x", None]}
    )
    assert got.status_code == 200
    records = got.json()["records"]
    assert json.dumps(records[0]["forecast"]) == json.dumps(want)
    assert set(records[1]) == {"error"} and set(records[2]) == {"error"}


def test_predict_bad_items_are_error_records(server: Served) -> None:
    inputs = ["fine text", 5, None, {"a": 1}, ["x"], True, "more text"]
    got = server.client.post("/v1/models/sentiment/predict", json={"inputs": inputs})
    assert got.status_code == 200
    records = got.json()["records"]
    assert [r["line"] for r in records] == list(range(1, 8))
    assert ["error" in r for r in records] == [False, True, True, True, True, True, False]


# -- Open Inference Protocol through the real client ------------------------------------------


def test_tritonclient_talks_to_the_server(server: Served, models: dict[str, BiLSTM]) -> None:
    triton = pytest.importorskip("tritonclient.http")
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("pos-en")
    assert client.get_server_metadata()["name"] == "bilstm"
    meta = client.get_model_metadata("pos-en")
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("input_ids", "INT64", [-1, -1]),
        ("lengths", "INT64", [-1]),
        ("char_ids", "INT64", [-1, -1, 20]),
    ]
    assert meta["outputs"][-1] == {
        "name": "probabilities",
        "datatype": "FP32",
        "shape": [-1, -1, 17],
    }

    tagger = models["pos-en"]
    feeds = tagger.encoder.batch([["The", "dog", "barks", "."], ["Hello", "there"]])
    want = tagger.run(feeds)
    for binary in (True, False):
        inputs = []
        for name, value in feeds.items():
            tensor = triton.InferInput(name, list(value.shape), "INT64")
            tensor.set_data_from_numpy(value, binary_data=binary)
            inputs.append(tensor)
        outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary)]
        result = client.infer("pos-en", inputs, outputs=outputs)
        assert np.array_equal(result.as_numpy("probabilities"), want["probabilities"])
        everything = client.infer("pos-en", inputs)  # no outputs named: all, binary
        assert np.array_equal(everything.as_numpy("logits"), want["logits"])

    forecaster = models["elecdemand-h1"]
    x = np.random.default_rng(0).uniform(0, 5, (3, 48, 3)).astype(np.float32)
    lens = np.full(3, 48, np.int64)
    inputs = [
        triton.InferInput("features", [3, 48, 3], "FP32"),
        triton.InferInput("lengths", [3], "INT64"),
    ]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(lens)
    got = client.infer("elecdemand-h1", inputs).as_numpy("forecast")
    assert np.array_equal(got, forecaster.run({"features": x, "lengths": lens})["forecast"])

    with pytest.raises(Exception, match="unknown model"):
        client.get_model_metadata("nope")
    bad = triton.InferInput("input_ids", [1, 2], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 2), np.float32))
    with pytest.raises(Exception, match="datatype"):
        client.infer("sentiment", [bad])
    client.close()


# -- standalone models: raw text in as OIP BYTES ---------------------------------------------

STANDALONE_TEXTS = ["a gorgeous witty movie", "dull and flat", "the dog barks .", "witty"]


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, dict[str, Any]]]:
    """A server of two standalone (`--with-tokenizer`) models: a classifier and a tagger."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from helpers.checkpoints import random_checkpoint

    from bilstm.export import export_checkpoint

    folder = tmp_path_factory.mktemp("serve-standalone")
    paths = {}
    for task, extra in (("classify", {}), ("tag", {"char_dim": 3, "char_filters": 4})):
        ckpt = random_checkpoint(task, texts=STANDALONE_TEXTS, hidden_size=5, **extra)
        paths[task] = folder / f"{task}.onnx"
        export_checkpoint(ckpt, paths[task], with_tokenizer=True, verify=False)
    srv = Served(*(f"sa-{t}={p}" for t, p in paths.items()), "--port=0", "--threads=1")
    loaded = {t: BiLSTM.load(p, threads=1) for t, p in paths.items()}
    yield srv, loaded
    srv.client.close()
    assert srv.stop() == 0


def _text_input(triton: Any, texts: list[str], binary: bool) -> Any:
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary)
    return tensor


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    if want.dtype == object:  # binary BYTES come back as bytes, JSON ones as str
        decoded = [v.decode() if isinstance(v, bytes) else v for v in got.ravel()]
        return decoded == [str(v) for v in want.ravel()] and got.size == want.size
    return np.array_equal(got.reshape(want.shape), want)


def test_tritonclient_sends_bytes_to_standalone_models(
    standalone: tuple[Served, dict[str, Any]],
) -> None:
    triton = pytest.importorskip("tritonclient.http")
    srv, loaded = standalone
    client = triton.InferenceServerClient(url=srv.url.removeprefix("http://"))
    meta = client.get_model_metadata("sa-classify")
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("text", "BYTES", [-1])
    ]
    outputs = {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]}
    assert outputs["label"] == ("BYTES", [-1])
    assert outputs["classes"] == ("BYTES", [3])  # no batch axis: the labels, whole
    assert outputs["probabilities"] == ("FP32", [-1, 3])
    tag_meta = client.get_model_metadata("sa-tag")
    assert {o["name"]: o["shape"] for o in tag_meta["outputs"]}["tags"] == [-1, -1]

    for name, task in (("sa-classify", "classify"), ("sa-tag", "tag")):
        texts = [*STANDALONE_TEXTS, "", "Ünïcödé 🎬 witty"]
        want = loaded[task].run({"text": np.array(texts, dtype=object)})
        for binary in (True, False):
            result = client.infer(name, [_text_input(triton, texts, binary)])
            for output, value in want.items():
                assert _same(result.as_numpy(output), value), (name, output, binary)
    bad = triton.InferInput("text", [1], "INT64")
    bad.set_data_from_numpy(np.zeros(1, np.int64))
    with pytest.raises(Exception, match="BYTES"):
        client.infer("sa-classify", [bad])
    client.close()


def test_standalone_requests_are_batched_only_where_results_stay_the_same(
    standalone: tuple[Served, dict[str, Any]],
) -> None:
    triton = pytest.importorskip("tritonclient.http")
    srv, loaded = standalone
    rng = np.random.default_rng(5)
    words = " ".join(STANDALONE_TEXTS).split()
    requests = [
        [" ".join(rng.choice(words, rng.integers(1, 12))) for _ in range(rng.integers(1, 4))]
        for _ in range(24)
    ]

    def infer(args: tuple[str, list[str]]) -> None:
        name, texts = args
        client = triton.InferenceServerClient(url=srv.url.removeprefix("http://"))
        try:
            result = client.infer(name, [_text_input(triton, texts, True)])
        finally:
            client.close()
        # alone: a tagger's `tokens`/`tags` are as long as this request's longest text
        want = loaded[name.removeprefix("sa-")].run({"text": np.array(texts, dtype=object)})
        for output, value in want.items():
            assert _same(result.as_numpy(output), value), (name, output)

    def tag_batches() -> tuple[float, float]:
        text = srv.client.get("/metrics").text
        found = dict(
            re.findall(r'^bilstm_batch_rows_(count|sum)\{model="sa-tag"\} (\S+)$', text, re.M)
        )
        return float(found.get("count", 0)), float(found.get("sum", 0))

    before = tag_batches()
    jobs = [(n, t) for n in ("sa-classify", "sa-tag") for t in requests]
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(infer, jobs))
    after = tag_batches()
    # the tagger's output length depends on the run's texts: its requests are never stacked,
    # so each batch holds one request's rows
    rows = sum(len(t) for t in requests)
    assert (after[0] - before[0], after[1] - before[1]) == (len(requests), rows)


# -- bad input --------------------------------------------------------------------------------

IDS = {"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [5, 6]}
LENS = {"name": "lengths", "shape": [1], "datatype": "INT64", "data": [2]}
PREDICT = "/v1/models/sentiment/predict"
INFER = "/v2/models/sentiment/infer"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (PREDICT, b"{not json", 400),
        (PREDICT, b"\xff\xfe\x00garbage", 400),
        (PREDICT, b"[1, 2]", 400),
        (PREDICT, b'{"inputs": "one text"}', 400),
        (PREDICT, b'{"inputs": []}', 400),
        (PREDICT, b'{"inputs": {"a": 1}}', 400),
        (PREDICT, b'{"text": ["x"]}', 400),
        (PREDICT, b'{"inputs": ["x"], "parameters": {"top_k": 3}}', 400),
        (PREDICT, b'{"inputs": ["x"], "parameters": {"probabilities": "no"}}', 400),
        (PREDICT, b'{"inputs": ["x"], "parameters": [1]}', 400),
        (PREDICT, json.dumps({"inputs": ["x"] * 65}).encode(), 413),
        (PREDICT, b"[" * 100_000, 400),
        ("/v1/models/nope/predict", b'{"inputs": ["x"]}', 404),
        (
            "/v1/models/elecdemand-h1/predict",
            b'{"inputs": [[1]], "parameters": {"rolling": true}}',
            400,
        ),
        (INFER, b"{}", 400),
        (INFER, json.dumps({"inputs": [IDS]}).encode(), 400),
        (INFER, json.dumps({"inputs": [{**IDS, "datatype": "FP32"}, LENS]}).encode(), 400),
        (INFER, json.dumps({"inputs": [{**IDS, "shape": [2, 2]}, LENS]}).encode(), 400),
        (INFER, json.dumps({"inputs": [{**IDS, "shape": [1, 0], "data": []}, LENS]}).encode(), 400),
        (INFER, json.dumps({"inputs": [IDS, {**LENS, "data": [0]}]}).encode(), 400),
        (INFER, json.dumps({"inputs": [IDS, {**LENS, "data": [9]}]}).encode(), 400),
        (INFER, json.dumps({"inputs": [{**IDS, "data": [5, 99999]}, LENS]}).encode(), 400),
        (INFER, json.dumps({"inputs": [{**IDS, "data": [5, "x"]}, LENS]}).encode(), 400),
        (INFER, json.dumps({"inputs": [IDS, LENS], "outputs": [{"name": "nope"}]}).encode(), 400),
        ("/v2/models/nope/infer", json.dumps({"inputs": [IDS, LENS]}).encode(), 404),
        (
            "/v2/models/sentiment/versions/7/infer",
            json.dumps({"inputs": [IDS, LENS]}).encode(),
            404,
        ),
    ],
)
def test_bad_requests_get_one_line_4xx(server: Served, path: str, body: bytes, status: int) -> None:
    got = server.client.post(path, content=body)
    assert got.status_code == status, got.text
    assert "\n" not in got.text and set(got.json()) == {"error"}
    assert server.client.get("/v2/health/ready").json() == {"ready": True}


def test_huge_body_is_413_and_the_server_keeps_serving(server: Served) -> None:
    got = server.client.post(PREDICT, content=b"x" * (100 << 20))
    assert got.status_code == 413
    assert "limit" in got.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused as it streams past the limit
        for _ in range(40):
            yield b"y" * (64 << 10)

    got = server.client.post(PREDICT, content=chunks())
    assert got.status_code == 413
    ok = server.client.post(PREDICT, json={"inputs": ["still here"]})
    assert ok.status_code == 200


def test_fuzzed_bodies_never_break_the_server(server: Served) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    values = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
    tensor = st.fixed_dictionaries(
        {
            "name": st.sampled_from(["input_ids", "lengths", "x"]),
            "shape": st.lists(st.integers(-2, 4), max_size=3),
            "datatype": st.sampled_from(["INT64", "FP32", "BYTES", "BOOL"]),
            "data": values,
        }
    )
    bodies = (
        st.binary(max_size=200)
        | values.map(lambda v: json.dumps(v).encode())
        | st.fixed_dictionaries({"inputs": values, "parameters": values}).map(
            lambda v: json.dumps(v).encode()
        )
        | st.fixed_dictionaries({"inputs": st.lists(tensor, max_size=3)}).map(
            lambda v: json.dumps(v).encode()
        )
    )
    paths = st.sampled_from(
        [PREDICT, INFER, "/v1/models/pos-en/predict", "/v2/models/elecdemand-h1/infer"]
    )

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(path=paths, body=bodies)
    def check(path: str, body: bytes) -> None:
        got = server.client.post(path, content=body)
        assert got.status_code < 500, (body, got.text)
        assert "\n" not in got.text or got.status_code == 200
        if got.status_code >= 400:
            assert set(got.json()) == {"error"}

    check()
    assert server.client.get("/v2/health/ready").json() == {"ready": True}
    assert server.proc.poll() is None


# -- dynamic batching, metrics, access log ----------------------------------------------------


def test_concurrent_requests_are_batched_and_identical_to_scoring_alone(
    server: Served, models: dict[str, BiLSTM]
) -> None:
    rng = np.random.default_rng(7)
    words = "the movie was great bad awful plot acting fine a of and ___".split()
    requests = [
        [" ".join(rng.choice(words, rng.integers(1, 30))) for _ in range(rng.integers(1, 4))]
        for _ in range(48)
    ]

    def post(args: tuple[str, list[str]]) -> tuple[str, list[str], bytes]:
        name, texts = args
        with httpx.Client(base_url=server.url, timeout=60) as client:
            got = client.post(
                f"/v1/models/{name}/predict",
                json={"inputs": texts},
                headers={"Accept": "application/x-ndjson"},
            )
            assert got.status_code == 200
            return name, texts, got.content

    jobs = [(n, t) for n in ("sentiment", "sentiment-int8", "pos-en") for t in requests[:16]]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(post, jobs))
    for name, texts, body in results:
        want = "".join(line + "\n" for line in expected_lines(models[name], texts))
        assert body.decode("utf-8") == want, name

    # OIP: rows of several requests with equal shapes are stacked; each gets its own rows back
    model = models["sentiment"]

    def infer(ids: list[int]) -> None:
        body = {
            "inputs": [
                {"name": "input_ids", "shape": [1, len(ids)], "datatype": "INT64", "data": ids},
                {"name": "lengths", "shape": [1], "datatype": "INT64", "data": [len(ids)]},
            ],
            "outputs": [{"name": "probabilities"}],
        }
        with httpx.Client(base_url=server.url, timeout=60) as client:
            got = client.post(INFER, json=body).json()["outputs"][0]
        feeds = {"input_ids": np.array([ids], np.int64), "lengths": np.array([len(ids)], np.int64)}
        want = model.run(feeds)["probabilities"]
        assert np.array_equal(np.array(got["data"], np.float32).reshape(got["shape"]), want)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(infer, [rng.integers(1, 9000, 5).tolist() for _ in range(32)]))

    text = server.client.get("/metrics").text
    assert "bilstm_queue_rows" in text and "bilstm_request_latency_seconds_bucket" in text
    batches = {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'^bilstm_batch_rows_(count|sum)\{model="sentiment"\} (\S+)$', text, re.M
        )
    }
    assert batches["sum"] > batches["count"], "no two requests were ever scored together"


def test_access_log_is_json_on_stderr(server: Served) -> None:
    server.client.get("/v2/health/live")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logged = [json.loads(x) for x in server.lines if x.startswith("{")]
        if any(r["path"] == "/v2/health/live" for r in logged):
            break
        time.sleep(0.05)
    record = next(r for r in logged if r["path"] == "/v2/health/live")
    assert record["status"] == 200 and record["method"] == "GET" and record["ms"] >= 0
    assert {"time", "client", "bytes"} <= set(record)


def test_docs_and_openapi(server: Served) -> None:
    assert server.client.get("/docs").status_code == 200
    spec = server.client.get("/openapi.json").json()
    assert (
        "/v1/models/{name}/predict" in spec["paths"] and "/v2/models/{name}/infer" in spec["paths"]
    )


# -- security, timeouts, shutdown -------------------------------------------------------------


class HeldRequest:
    """A predict request whose body is still arriving: headers and part of the body sent on
    a raw socket, the rest on `finish()`. While it is open, a forming batch waits for it."""

    def __init__(self, srv: Served, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"inputs": ["held back"]}).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock = socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])))
        self.sock.settimeout(60)
        self.sock.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Type: "
            f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:5]
        )
        self.rest = body[5:]
        wait_for_metric(srv, 'bilstm_arriving_requests{model="sentiment"} 1.0', headers)

    def finish(self) -> int:
        """Send the rest of the body; the response's status."""
        self.sock.sendall(self.rest)
        head = b""
        while b"\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            head += chunk
        self.sock.close()
        return int(head.split(b" ", 2)[1])


def wait_for_metric(srv: Served, line: str, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if line in srv.client.get("/metrics", headers=headers).text.splitlines():
            return
        time.sleep(0.02)
    raise AssertionError(f"/metrics never showed {line}")


def test_api_key_and_timeout() -> None:
    srv = Served(
        "sentiment",
        "--port=0",
        "--max-delay-ms=400",
        "--timeout=0.1",
        "--threads=1",
        env={"BILSTM_API_KEY": "s3cret-key"},
    )
    try:
        c = srv.client
        assert c.get("/v2/health/ready").status_code == 200  # probes need no key
        assert c.get("/v2/models/sentiment").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/v2/models/sentiment", headers={"X-API-Key": "s3cret-key"}).status_code == 200
        auth = {"Authorization": "Bearer s3cret-key"}
        assert c.post(PREDICT, json={"inputs": ["x"]}, headers=auth).status_code == 200
        # a batch waits (400 ms) only for a request still arriving: past --timeout, a 504
        held = HeldRequest(srv, auth)
        got = c.post(PREDICT, json={"inputs": ["x"]}, headers=auth)
        assert got.status_code == 504 and "timeout" in got.json()["error"]
        assert held.finish() == 200
    finally:
        srv.client.close()
        assert srv.stop() == 0


def test_a_lone_request_does_not_wait_for_max_delay() -> None:
    srv = Served("sentiment", "--port=0", "--max-delay-ms=5000", "--threads=1")
    try:
        for _ in range(3):
            start = time.monotonic()
            assert srv.client.post(PREDICT, json={"inputs": ["x"]}).status_code == 200
            assert time.monotonic() - start < 2.5  # the 5 s delay is for arriving requests
    finally:
        srv.client.close()
        assert srv.stop() == 0


def logged(srv: Served, path: str, count: int = 1) -> list[dict[str, Any]]:
    """The access log records of `path` once there are `count` of them (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        found = [json.loads(x) for x in srv.lines if x.startswith("{")]
        found = [r for r in found if r["path"] == path]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_client_that_leaves_is_a_499_and_its_job_is_dropped() -> None:
    srv = Served("sentiment", "--port=0", "--max-delay-ms=60000", "--threads=1")
    port = int(srv.url.rsplit(":", 1)[1])
    body = json.dumps({"inputs": ["gone before the answer"]}).encode()
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        # 1. gone while its body is still arriving
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head + body[:5])
            wait_for_metric(srv, 'bilstm_arriving_requests{model="sentiment"} 1.0')
        wait_for_metric(srv, 'bilstm_arriving_requests{model="sentiment"} 0.0')
        # 2. gone while its job waits in a batch (held open by a request still arriving)
        held = HeldRequest(srv)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head + body)
            wait_for_metric(srv, 'bilstm_queue_rows{model="sentiment"} 1.0')
        time.sleep(1.0)  # the server sees the connection drop (an event, not a message)
        assert held.finish() == 200  # the batch goes out with the held request alone
        records = logged(srv, PREDICT, 3)
        assert [r["status"] for r in records] == [499, 499, 200], records
        assert records[0]["bytes"] == records[1]["bytes"] == 0
        assert not [x for x in srv.lines if "internal error" in x or "Traceback" in x]
        metrics = srv.client.get("/metrics").text
        assert 'bilstm_requests_total{code="499",route="v1/models/sentiment/predict"} 2.0' in (
            metrics
        )
        # the gone job was not scored: one batch of one row (the held request)
        assert 'bilstm_batch_rows_sum{model="sentiment"} 1.0' in metrics
        assert 'bilstm_batch_rows_count{model="sentiment"} 1.0' in metrics
    finally:
        srv.client.close()
        assert srv.stop() == 0


def test_off_loopback_needs_an_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BILSTM_API_KEY", raising=False)
    run = bilstm("serve", "sentiment", "--host", "0.0.0.0")
    assert run.exit_code == 2 and "--api-key" in run.stderr


def test_sigterm_finishes_accepted_requests_and_refuses_new_ones(models: dict[str, BiLSTM]) -> None:
    srv = Served("sentiment", "--port=0", "--max-delay-ms=60000", "--max-batch=1000", "--threads=1")
    texts = [[f"request {i} was a fine movie"] * (1 + i % 3) for i in range(12)]
    rows = sum(len(t) for t in texts)

    def post(inputs: list[str]) -> httpx.Response:
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            return client.post(
                PREDICT, json={"inputs": inputs}, headers={"Accept": "application/x-ndjson"}
            )

    try:
        held = HeldRequest(srv)  # the batch waits for it: the 12 below stay queued
        with ThreadPoolExecutor(len(texts)) as pool:
            futures = [pool.submit(post, t) for t in texts]
            wait_for_metric(srv, f'bilstm_queue_rows{{model="sentiment"}} {float(rows)}')
            srv.proc.send_signal(signal.SIGTERM)
            answers = [f.result(60) for f in futures]
            assert held.finish() == 200  # accepted before SIGTERM, its body after: answered too
        for inputs, got in zip(texts, answers, strict=True):
            assert got.status_code == 200
            assert got.text == "".join(
                x + "\n" for x in expected_lines(models["sentiment"], inputs)
            )
        assert srv.proc.wait(60) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(srv.url + "/v2/health/live", timeout=5)
    finally:
        srv.client.close()
        srv.stop()


def test_bilstm_help_does_not_import_the_server() -> None:
    code = (
        "import sys\nfrom bilstm.cli import app\napp()\n"
        "heavy = ('fastapi', 'uvicorn', 'pydantic', 'prometheus_client')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
