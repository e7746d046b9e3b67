"""Headless Chromium for the explorer's tests: Debian's `chromium` and `chromium-driver`
(installed by .ci/run), driven by Selenium. Never a downloaded browser."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = os.environ.get("MEMORY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MEMORY_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")


def screenshot_dir() -> Path:
    """Where screenshots are kept as test artifacts: $MEMORY_TEST_SCREENSHOTS, else a folder
    under the system temp dir (printed by the tests that write there)."""
    path = Path(
        os.environ.get("MEMORY_TEST_SCREENSHOTS")
        or Path(tempfile.gettempdir()) / "memory-service-screenshots"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def chromium(profile: Path, width: int = 1280, height: int = 900) -> webdriver.Chrome:
    """A fresh headless Chromium with its own profile directory. The flags keep it from
    reaching the network on its own (updates, sync, QUIC probes) and let it run as root."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    # Console messages and CSP violations end up in the browser log the tests read.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def browser_available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()
