"""uvicorn's httptools protocol with two limits it lacks: the size of a request head and the time
a client may take to send it.

Without them, a client can send an endless header (httptools buffers it: 200 MB of one header
cost the server 400 MB of memory here) or dribble a head a byte at a time and hold a connection
forever (slowloris; uvicorn's keep-alive timeout restarts with every byte). Both are answered
with the error envelope and the connection is closed; requests whose head arrives in one read,
which is nearly all, pay nothing but a flag check.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEAD_BYTES = 64 * 1024
DEFAULT_HEAD_TIMEOUT_SECONDS = 30.0

_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}
_CODES = {400: "bad_request", 408: "request_timeout", 431: "header_too_large"}
# What uvicorn's parser errors (a malformed request line, header or framing) are answered with.
MALFORMED = "malformed HTTP/1.1 request: the request line, a header or the body framing is invalid"
# After a refusal the server half-closes (FIN after the answer) and reads and drops what the
# client still sends, for at most this long and this much, before it closes. Closing at once with
# unread data would make the kernel send a reset that can discard the answer before it arrives.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing; uvicorn then calls send_400_response."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = DEFAULT_MAX_HEAD_BYTES
    head_timeout = DEFAULT_HEAD_TIMEOUT_SECONDS

    _in_head = False  # between the first byte of a request and the end of its headers
    _head_read = 0  # bytes read while the head was incomplete (a head spread over reads)
    _head_fields = 0  # bytes of the URL and headers parsed (a head that came in one read)
    _head_timer: asyncio.TimerHandle | None = None
    _refusal: tuple[int, str] | None = None
    _lingering = False
    _lingered = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # The first head is due from the connection's start: uvicorn's keep-alive timer only runs
        # between requests, so a client that connects and sends nothing (or only blank lines,
        # which the parser skips without beginning a request) would hold the connection forever.
        self._in_head = True
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # refused: drop what still comes, up to a bound
            self._lingered += len(data)
            if self._lingered > LINGER_BYTES:
                self.transport.close()
            return
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        # The head is still incomplete after this read, so (nearly) all of it was head. A read
        # that also ended the previous request's body is counted whole: at most one read over.
        self._head_read += len(data)
        if self._head_read > self.max_head_bytes:
            self._refuse(431, self._too_large())
        elif self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_read = self._head_fields = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        self._head_fields += n
        if self._head_fields > self.max_head_bytes:
            self._refusal = (431, self._too_large())
            raise _HeadRefused

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to any parser error, ours included: answer ours with its own status.
        if self._refusal is not None:
            status, message = self._refusal
            self._refusal = None
            self._refuse(status, message)
        else:  # uvicorn's own answer is text/plain: every refusal is the error envelope
            self._refuse(400, MALFORMED)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def eof_received(self) -> None:
        # None, like uvicorn's: a false answer lets the transport close itself after EOF.
        if self._lingering:  # the client is done too
            self.transport.close()
            return
        super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _too_large(self) -> str:
        return f"request head (request line and headers) is larger than {self.max_head_bytes} bytes"

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, f"request head not received within {self.head_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        self._in_head = False
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request is still being answered: ours would come before its answer
            # on the wire, and a half-closed transport would fail the app's writes. Close, as
            # uvicorn does on a parser error.
            self.transport.close()
            return
        code = _CODES[status]
        body = json.dumps(
            {"success": False, "error": message, "message": message, "code": code}
        ).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._lingering = True
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def bounded_protocol(max_head_bytes: int, head_timeout: float) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for `uvicorn.run(http=...)` with these limits."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"max_head_bytes": max_head_bytes, "head_timeout": head_timeout},
    )
