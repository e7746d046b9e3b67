"""The explorer's files as served: security headers, caching, and static checks of the assets
that keep stored content inert (no inline script, no HTML parsing of data)."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

from memory_service.http.ui import CSP

UI = files("memory_service").joinpath("ui")
ASSETS = sorted(p.name for p in UI.iterdir() if p.is_file())


def test_the_package_ships_the_explorer() -> None:
    assert {"index.html", "app.js", "api.js", "dom.js", "style.css"} <= set(ASSETS)
    # pyproject's package data carries them into a wheel.
    pyproject = (files("memory_service") / ".." / "pyproject.toml").read_text()
    assert re.search(r'memory_service = \[[^]]*"ui/\*"', pyproject)


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/app.js", "/ui/style.css", "/ui/nope.js"])
async def test_every_ui_answer_carries_the_security_headers(sqlite_api, path: str) -> None:
    r = await sqlite_api.client.get(path)
    assert r.status_code == (404 if "nope" in path else 200)
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"


def test_the_policy_allows_no_inline_script_and_no_framing() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe" not in CSP


async def test_types_and_revalidation(sqlite_api) -> None:
    c = sqlite_api.client
    page = await c.get("/ui")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.text == (UI / "index.html").read_text()
    script = await c.get("/ui/app.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    tag = script.headers["etag"]
    again = await c.get("/ui/app.js", headers={"If-None-Match": tag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["content-security-policy"] == CSP
    assert (await c.get("/ui/app.js", headers={"If-None-Match": '"other"'})).status_code == 200
    # No path outside the folder is reachable through the asset route.
    for path in ("/ui/..%2Fapp.py", "/ui/%2E%2E/app.py", "/ui/../pyproject.toml"):
        r = await c.get(path)
        assert r.status_code == 404, path
        assert r.json()["success"] is False and r.json()["code"] == "not_found", r.text
    # An unknown asset is the error envelope too (it was text/plain).
    r = await c.get("/ui/nope.js")
    assert r.json() == {
        "success": False,
        "error": "no such file in the explorer",
        "message": "no such file in the explorer",
        "code": "not_found",
    }


def test_the_page_has_no_inline_script_style_or_handler() -> None:
    html = (UI / "index.html").read_text()
    for tag in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S):
        assert tag.strip() == ""
    assert all('src="/ui/' in t for t in re.findall(r"<script\b[^>]*>", html))
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert not re.search(r"\sstyle\s*=", html)
    assert "<style" not in html
    assert not re.search(r"https?://", html)  # nothing from another origin


@pytest.mark.parametrize("name", [n for n in ASSETS if n.endswith(".js")])
def test_scripts_never_parse_html_or_code(name: str) -> None:
    source = (UI / name).read_text()
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "setAttribute('style'",
        "localStorage",
        "document.cookie",
    ):
        assert sink not in source, f"{name} uses {sink}"
    assert not re.search(r"https?://", source)  # every request goes to this origin
