"""Headless Chromium through the system chromedriver, for the browser test (tests/test_web.py)
and the browser benchmark (benchmarks/web.py), which imports it from here."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1000,1400",
]
MISSING = (
    "no browser: install Debian's chromium and chromium-driver "
    "(or set BILSTM_CHROMIUM and BILSTM_CHROMEDRIVER)"
)


def binary(env: str, *names: str) -> str | None:
    """The program `env` names, else the first of `names` on PATH, else None."""
    if os.environ.get(env):
        return os.environ[env]
    return next((p for p in map(shutil.which, names) if p), None)


def binaries() -> tuple[str, str] | None:
    """Chromium's and chromedriver's paths, or None when either is missing."""
    chromium = binary("BILSTM_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
    driver = binary("BILSTM_CHROMEDRIVER", "chromedriver")
    return (chromium, driver) if chromium and driver else None


def chromium(chromium_path: str, driver_path: str, profile: Path | None = None) -> Any:
    """A selenium driver of headless Chromium with a fresh profile (a new temporary folder
    unless `profile` is given) and the browser console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium_path
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    folder = profile or Path(tempfile.mkdtemp(prefix="bilstm-chromium-"))
    options.add_argument(f"--user-data-dir={folder}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)
