"""Driving the explorer (/ui) in a real headless Chromium: signing in, waiting, reading."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from urllib.parse import quote

import httpx
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import screenshot_dir

# How long to wait for the page to reach a state (a wait, not a timing assertion).
PATIENCE = 30


class Ui:
    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.url = base_url

    # --- waiting and finding ---------------------------------------------------------------------

    def wait(self, condition, message: str = ""):  # noqa: ANN001, ANN201
        return WebDriverWait(
            self.driver,
            PATIENCE,
            poll_frequency=0.05,
            # The page re-renders while it is polled: an element seen a moment ago may be gone.
            ignored_exceptions=[StaleElementReferenceException],
        ).until(lambda _d: condition(), message)

    def find(self, css: str) -> WebElement:
        return self.wait(lambda: self._visible(css), f"no visible {css}")

    def _visible(self, css: str) -> WebElement | None:
        for el in self.driver.find_elements(By.CSS_SELECTOR, css):
            if el.is_displayed():
                return el
        return None

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def wait_text(self, css: str, wanted: str) -> str:
        """Wait until the element's text contains `wanted`; returns the text."""
        self.wait(
            lambda: (el := self._visible(css)) is not None and wanted in el.text,
            f"{css} never showed {wanted!r}",
        )
        return self.text(css)

    def js(self, script: str, *args):  # noqa: ANN002, ANN201
        return self.driver.execute_script(script, *args)

    def go(self, route: str) -> None:
        """Follow a route inside the page (a fragment change: the document stays)."""
        self.js("location.hash = arguments[0]", route)

    def heading(self, title: str) -> None:
        self.wait(
            lambda: self.js("return document.querySelector('#view h2')?.textContent") == title
        )

    def status(self, wanted: str) -> str:
        return self.wait_text("#status", wanted)

    def alert_open(self) -> bool:
        try:
            self.driver.switch_to.alert  # noqa: B018
            return True
        except NoAlertPresentException:
            return False

    # --- the session -----------------------------------------------------------------------------

    def open(self) -> None:
        # Forget any key from a page where the explorer is not running (so that no request of
        # its own races with this), then load the explorer afresh.
        self.driver.get(f"{self.url}/health")
        self.js("sessionStorage.clear()")
        self.driver.get(f"{self.url}/ui#/overview")
        self.find("#api-key")

    def sign_in(self, key: str, workspace: str | None = None) -> None:
        self.open()
        field = self.find("#api-key")
        field.send_keys(key)
        self.find("#sign-in-form button").click()
        self.wait(lambda: self.js("return document.getElementById('workspace-name').textContent"))
        if workspace is not None:
            assert self.text("#workspace-name") == workspace
        self.heading("Overview")

    def shot(self, name: str) -> Path:
        path = screenshot_dir() / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


class Seed:
    """Data put in through the public API, as a workflow would."""

    def __init__(self, base_url: str, key: str) -> None:
        self.client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )

    def add(self, conversation: str, block: str, contents: list[str], **extra) -> None:  # noqa: ANN003
        roles = ("user", "assistant")
        for start in range(0, len(contents), 1000):
            batch = contents[start : start + 1000]
            messages = [{"role": roles[(start + i) % 2], "content": c} for i, c in enumerate(batch)]
            body = {"conversationId": conversation, "blockId": block, "messages": messages}
            r = self.client.post("/api/memory", json={**body, **extra})
            assert r.status_code == 200, r.text

    def put(self, key: str, value: bytes, content_type: str) -> dict:
        r = self.client.put(
            "/api/kv/" + quote(key, safe="").replace(".", "%2E"),
            content=value,
            headers={"Content-Type": content_type},
        )
        assert r.status_code in (200, 201), r.text
        return r.json()

    def value(self, key: str) -> httpx.Response:
        return self.client.get("/api/kv/" + quote(key, safe="").replace(".", "%2E"))

    def get(self, path: str, **params) -> dict:  # noqa: ANN003
        r = self.client.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid PNG of one colour, made with the standard library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )
