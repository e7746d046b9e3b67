"""Every HTTP request: a request id, one JSON access log line, and the request metrics.

This wraps the app's whole ASGI handler, outside Litestar's routing, so that requests no route
matches (404, 405) get their request id, log line and count too: Litestar runs app-level
middleware only for requests that reached a route.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Iterable
from time import perf_counter
from typing import cast

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ..logs import ACCESS_LOGGER, AccessEntry, AccessLog, request_id_var
from ..services.metrics import Metrics
from .auth import WORKSPACE_SCOPE_KEY
from .protocol import ANSWERED_SCOPE_KEY

access_logger = logging.getLogger(ACCESS_LOGGER)

REQUEST_ID_HEADER = b"x-request-id"
# A client's request id is kept when it is short and printable ASCII (it is echoed in a header
# and written to logs); anything else is replaced by a fresh one.
_SANE_ID = re.compile(rb"[\x21-\x7e]{1,128}")
UNMATCHED = "unmatched"  # the route label of requests that no route matched
# Probes and scrapes come every few seconds: their lines are debug, not info.
_QUIET_ROUTES = frozenset({"/health", "/ready", "/metrics"})


class RequestIds:
    """Fresh request ids: 16 random hex digits per process, then a 16-digit counter. Unique
    like uuid4 (the random part tells processes and restarts apart) without a random read per
    request; a forked worker draws its own random part."""

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count()

    def __call__(self) -> str:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._prefix = os.urandom(8).hex()
            self._counter = itertools.count()
        return f"{self._prefix}{next(self._counter):016x}"


def request_id_of(headers: Iterable[tuple[bytes, bytes]], fresh: RequestIds) -> str:
    """The client's X-Request-ID when it is sane, else a fresh one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if _SANE_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return fresh()


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: AccessLog | None) -> None:
        self.app = app
        self.metrics = metrics
        # None when MEMORY_ACCESS_LOG=off (operators who log requests at a proxy).
        self.access_log = access_log
        self.request_ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        request_id = request_id_of(scope["headers"], self.request_ids)
        token = request_id_var.set(request_id)
        id_header = (b"x-request-id", request_id.encode("ascii"))
        status = 500  # if the app fails before answering, the server answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = perf_counter() - start
            # The client's answer, when the server gave it for the app (http/protocol.py).
            status = cast(int, scope.get(ANSWERED_SCOPE_KEY, status))
            route = scope.get("path_template") or UNMATCHED
            method = scope["method"]
            self.metrics.observe_request(method, route, status, seconds)
            level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
            # The level check keeps MEMORY_LOG_LEVEL the one switch for what is written.
            if self.access_log is not None and access_logger.isEnabledFor(level):
                self.access_log.record(
                    AccessEntry(
                        level,
                        request_id,
                        method,
                        route,
                        status,
                        seconds,
                        # http/auth.py notes the workspace name (a str) once it is known.
                        cast("str | None", scope.get(WORKSPACE_SCOPE_KEY)),
                    )
                )
            request_id_var.reset(token)
