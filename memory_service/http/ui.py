"""The memory explorer at `/ui`: static HTML, CSS and JavaScript shipped inside the package.

The page talks to the public API only, with the key the user typed (kept in the tab's
sessionStorage), so it can show nothing the key could not fetch itself. Its answers carry a
strict Content-Security-Policy: scripts and styles only from this origin, no inline script, no
framing, no plug-ins; images also from blob: URLs (the KV preview of PNG, JPEG, ... values).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.resources import files

from litestar import Controller, Request, Response, get
from litestar.params import FromPath

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Revalidated on every load (cheap: an ETag), so an upgrade of the service is seen at once.
    "Cache-Control": "no-cache",
}
# Litestar adds "; charset=utf-8" to every text/* type itself.
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of memory_service/ui with a known type, read once (a few tens of KiB)."""
    assets = {}
    for entry in files("memory_service").joinpath("ui").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in TYPES:
            body = entry.read_bytes()
            tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            assets[entry.name] = Asset(body, TYPES[suffix], tag)
    return assets


def serve(request: Request, name: str) -> Response[bytes]:
    asset = request.app.state.ui_assets.get(name)
    if asset is None:
        # The error envelope, like every other refusal of the service.
        message = "no such file in the explorer"
        body = {"success": False, "error": message, "message": message, "code": "not_found"}
        return Response(
            json.dumps(body).encode(),
            status_code=404,
            media_type="application/json",
            headers=SECURITY_HEADERS,
        )
    headers = {**SECURITY_HEADERS, "ETag": asset.etag}
    if asset.etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(b"", status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


class UiController(Controller):
    path = "/ui"
    include_in_schema = False

    @get(["", "/"], sync_to_thread=False)
    def index(self, request: Request) -> Response[bytes]:
        return serve(request, "index.html")

    @get("/{name:str}", sync_to_thread=False)
    def asset(self, request: Request, name: FromPath[str]) -> Response[bytes]:
        return serve(request, name)
