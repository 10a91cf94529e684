"""examples/web in a real browser: headless Chromium (driven by selenium and the system's
chromedriver) opens the page from examples/web/serve.py on loopback, a user types three
sentences, and the labels, probabilities and tags shown must be `bilstm-run`'s.

Needs the `selenium` package, Debian's `chromium` and `chromium-driver` (or BILSTM_CHROMIUM /
BILSTM_CHROMEDRIVER naming the binaries) and onnxruntime-web in examples/web (`npm ci` there,
else installed from the npm registry into a temporary copy); skipped with the reason otherwise.
The serve.py checks at the top need none of these.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import browser as browser_helpers
from typer.testing import CliRunner

from bilstm.runtime.cli import _make_apps

WEB = Path(__file__).resolve().parent.parent / "examples" / "web"
SENTENCES = [
    "What a wonderful film !",
    "The plot is thin and the acting is wooden .",
    "Café déjà-vu : I booked a table at the new Italian place on Friday !",
]
# pos-en is int8, and onnxruntime-web's wasm int8 kernels round differently from the x86 ones
# (confidences differ by up to about 0.01), so a near tie may get another tag in the browser.
# These sentences have no near tie: every tag's confidence in bilstm-run is at least this.
CLEAR_TAG_CONFIDENCE = 0.7
PAGE_TIMEOUT = 90.0  # seconds for the page to load both models (a loaded 2-core CI machine)


def _load_serve() -> ModuleType:
    spec = importlib.util.spec_from_file_location("web_serve", WEB / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


serve = _load_serve()


# -- the dev server (no browser needed) -------------------------------------------------------


def test_serve_sends_isolation_headers_and_binds_loopback() -> None:
    server, url = serve.serve_in_thread(WEB)
    try:
        assert server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
            headers = response.headers
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert '<script type="module" src="app.js">' in body
        with urllib.request.urlopen(url + "bilstm-web.js", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/javascript")
            assert "ort.wasm.min.mjs" in response.read().decode()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url + "no-such-file.onnx", timeout=10)
        assert missing.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_page_models_are_the_standalone_builtins() -> None:
    """The shipped files are standalone models whose metadata names the built-in they wrap."""
    from bilstm.runtime import BiLSTM

    for name, task in (("sentiment", "classify"), ("pos-en", "tag")):
        model = BiLSTM.load(WEB / "models" / f"{name}-standalone.onnx", device="cpu", threads=1)
        assert model.task == task and model.metadata.standalone
        assert model.metadata.export["standalone"]["wrapped_from"] == f"built-in {name}"
        assert model.labels == BiLSTM.load(name, device="cpu", threads=1).labels


@pytest.mark.train
@pytest.mark.slow
def test_make_models_rebuilds_the_shipped_tagger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make_models.py wraps the built-in model again, checks it against the runtime, and
    gets the graph that examples/web ships (so the shipped file is not stale)."""
    onnx = pytest.importorskip("onnx", reason="make_models.py needs the train extra")
    pytest.importorskip("torch", reason="make_models.py needs the train extra")
    spec = importlib.util.spec_from_file_location("web_make_models", WEB / "make_models.py")
    assert spec is not None and spec.loader is not None
    make_models = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, make_models)  # its dataclasses look it up
    spec.loader.exec_module(make_models)
    assert make_models.main(["--out", str(tmp_path), "pos-en"]) == 0
    rebuilt = onnx.load(str(tmp_path / "pos-en-standalone.onnx"))
    shipped = onnx.load(str(WEB / "models" / "pos-en-standalone.onnx"))
    assert rebuilt.graph.SerializeToString() == shipped.graph.SerializeToString()
    assert make_models.main(["--out", str(tmp_path), "elecdemand-h1"]) == 2  # not a text model


# -- the page in Chromium ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def web_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/web with onnxruntime-web installed (in place, or a temporary copy)."""
    if (WEB / "node_modules" / "onnxruntime-web" / "dist").is_dir():
        return WEB
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("onnxruntime-web is not installed in examples/web (npm ci) and npm is missing")
    work = tmp_path_factory.mktemp("web")
    for item in WEB.iterdir():
        if item.name != "node_modules":
            (work / item.name).symlink_to(item)
    try:
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm ci timed out in a copy of examples/web: is the npm registry reachable?")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        pytest.skip(f"onnxruntime-web could not be installed with npm ci: {' | '.join(tail)}")
    return work


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium through the system chromedriver, fresh profile, console log kept."""
    pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    found = browser_helpers.binaries()
    if found is None:
        pytest.skip(browser_helpers.MISSING)
    profile = Path(tempfile.mkdtemp(dir=tmp_path_factory.mktemp("chromium")))
    driver = browser_helpers.chromium(*found, profile=profile)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page_url(web_root: Path) -> Iterator[str]:
    server, url = serve.serve_in_thread(web_root)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


def _wait(driver: Any, condition: str, what: str, timeout: float = PAGE_TIMEOUT) -> Any:
    """Poll a JavaScript expression until it is truthy; fail with the page's error otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {condition};")
        if value:
            return value
        if driver.execute_script("return document.body.dataset.state") == "error":
            error = driver.execute_script("return document.getElementById('error').textContent")
            pytest.fail(f"the page failed: {error}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _bilstm_run(model: str, lines: list[str], tmp_path: Path) -> list[dict[str, Any]]:
    source = tmp_path / f"{model}.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _, single = _make_apps()
    result = CliRunner().invoke(single, [model, str(source), "--quiet"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def _console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.mark.slow
def test_page_scores_typed_sentences_like_bilstm_run(
    browser: Any, page_url: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get_log("browser")  # drop what earlier pages logged: only this page's count
    browser.get(page_url)
    _wait(browser, "document.body.dataset.state === 'ready'", "the models to load")
    assert browser.execute_script("return self.crossOriginIsolated") is True
    cores = browser.execute_script("return navigator.hardwareConcurrency")
    status = browser.find_element(By.ID, "status")
    assert status.get_attribute("data-backend") == "wasm"
    assert status.get_attribute("data-threads") == str(cores)
    assert "Download: sentiment 6.0 MB + pos-en 1.8 MB" in status.text

    box = browser.find_element(By.ID, "input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    typed = "\n".join(SENTENCES)
    for i, sentence in enumerate(SENTENCES):
        box.send_keys(("\n" if i else "") + sentence)  # key by key, as a user types
    _wait(
        browser,
        "document.body.dataset.state === 'ready' && "
        f"document.body.dataset.scored === {json.dumps(typed)}",
        "the typed sentences to be scored",
    )

    shown = browser.find_elements(By.CSS_SELECTOR, "#sentiment li")
    expected = _bilstm_run("sentiment", SENTENCES, tmp_path)
    assert len(shown) == len(expected) == 3
    for item, record in zip(shown, expected, strict=True):
        assert item.get_attribute("data-label") == record["label"]
        probabilities = json.loads(item.get_attribute("data-probabilities"))
        assert probabilities.keys() == record["probabilities"].keys()
        for label, p in record["probabilities"].items():
            assert abs(probabilities[label] - p) <= 1e-5, (record["line"], label)
        assert record["label"] in item.text  # what the user sees, not only the attribute

    tagged = browser.find_elements(By.CSS_SELECTOR, "#pos li")
    expected_tags = _bilstm_run("pos-en", SENTENCES, tmp_path)
    assert len(tagged) == 3
    assert min(c for r in expected_tags for c in r["confidences"]) >= CLEAR_TAG_CONFIDENCE
    for item, record in zip(tagged, expected_tags, strict=True):
        assert json.loads(item.get_attribute("data-tokens")) == record["tokens"]
        assert json.loads(item.get_attribute("data-tags")) == record["tags"]
    assert "Last inference (3 lines)" in browser.find_element(By.ID, "timing").text

    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert _console_errors(browser) == []


@pytest.mark.slow
def test_page_reports_a_missing_model(browser: Any, web_root: Path, tmp_path: Path) -> None:
    """A page whose model file is missing says so on the page (and in the console)."""
    root = tmp_path / "web"
    root.mkdir()
    for item in web_root.iterdir():
        if item.name != "models":
            (root / item.name).symlink_to(item.resolve())
    server, url = serve.serve_in_thread(root)
    try:
        browser.get_log("browser")
        browser.get(url)
        _wait(browser, "document.body.dataset.state === 'error'", "the page to report the error")
        error = browser.execute_script("return document.getElementById('error').textContent")
        assert "models/" in error and "HTTP 404" in error
        assert _console_errors(browser)  # the failed fetch and the error are logged
    finally:
        server.shutdown()
        server.server_close()
