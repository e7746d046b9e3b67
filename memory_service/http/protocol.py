"""uvicorn's httptools protocol with the limits it lacks: the size of a request head, the time
a client may take to send it, and the time it may take to send the body.

Without them, a client can send an endless header (httptools buffers it: 200 MB of one header
cost the server 400 MB of memory here), dribble a head a byte at a time and hold a connection
forever (slowloris; uvicorn's keep-alive timeout restarts with every byte), or announce a body
and never send it (the app waits in `receive()` for good). Each is answered with the error
envelope (431, 408) and the connection is closed; requests whose head and body arrive in one
read, which is nearly all, pay nothing but a flag check.

And a request answered before its body has arrived (a refusal: no credential, a bad header)
closes its connection once the answer is sent, rather than wait for the rest of a body nobody
will read: uvicorn would keep the connection for as long as the client keeps sending it.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEAD_BYTES = 64 * 1024
DEFAULT_HEAD_TIMEOUT_SECONDS = 30.0
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0

# Where a request answered by the protocol itself (a body timed out) notes its status, for the
# access log and metrics (http/observe.py): the app, told the client left, answers nobody.
ANSWERED_SCOPE_KEY = "memory_service.answered_by_protocol"
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
    body_timeout = DEFAULT_BODY_TIMEOUT_SECONDS

    _in_head = False  # between the first byte of a request and the end of its headers
    _head_read = 0  # bytes read while the head was incomplete (a head spread over reads)
    _head_fields = 0  # bytes of the URL and headers parsed (a head that came in one read)
    _head_timer: asyncio.TimerHandle | None = None
    _in_body = False  # between the end of a request's head and the end of its body
    _body_timer: asyncio.TimerHandle | None = None
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
        if self.transport.is_closing():
            return
        if self._in_body and self._body_timer is None:
            # The body did not come whole with its head: from now, it has body_timeout in all
            # (however steadily its bytes come).
            self._body_timer = self.loop.call_later(self.body_timeout, self._body_timed_out)
        if not self._in_head:
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
        elif self._in_body and not self.cycle.response_started:
            # The request's own body is malformed: the 400 is its answer, not the app's.
            self._body_done()
            self._answer_instead_of_app(400, MALFORMED)
        else:  # uvicorn's own answer is text/plain: every refusal is the error envelope
            self._refuse(400, MALFORMED)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        # Until on_message_complete (at once for a request without a body); not for an upgrade,
        # for which uvicorn makes no request cycle.
        self._in_body = self.cycle is not None and self.cycle.scope is self.scope

    def on_message_complete(self) -> None:
        self._body_done()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # self.cycle is the latest request: the one answered unless another was pipelined.
        if self._in_body and self.cycle.response_complete and not self.transport.is_closing():
            # Answered before its body arrived (a refusal): the rest of the body would only be
            # read to be dropped, and a client announcing a body it never sends would hold the
            # connection. Closed as after our own refusals, so that the answer still arrives.
            self._body_done()
            self._close_after_answer()

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
        self._body_done()
        super().connection_lost(exc)

    def _body_done(self) -> None:
        self._in_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        if self.pipeline:  # queued behind an earlier request (reading paused): not its fault
            self._body_timer = self.loop.call_later(self.body_timeout, self._body_timed_out)
            return
        self._in_body = False
        cycle = self.cycle
        if cycle.response_started:  # the app answers already; the client will not get all of it
            self.transport.close()
            cycle.disconnected = True
            cycle.message_event.set()
        else:
            self._answer_instead_of_app(
                408, f"request body not received within {self.body_timeout:g} s"
            )

    def _answer_instead_of_app(self, status: int, message: str) -> None:
        """The current request answered by the protocol (its body timed out or is malformed)."""
        cycle = self.cycle
        self._refuse(status, message, for_cycle=True)
        cycle.scope[ANSWERED_SCOPE_KEY] = status  # type: ignore[literal-required]
        # The app, waiting in receive() for the rest, is told the client is gone; whatever it
        # still sends is dropped (the answer is the one above).
        cycle.disconnected = True
        cycle.message_event.set()

    def _too_large(self) -> str:
        return f"request head (request line and headers) is larger than {self.max_head_bytes} bytes"

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, f"request head not received within {self.head_timeout:g} s")

    def _refuse(self, status: int, message: str, for_cycle: bool = False) -> None:
        """Answer `status` and close; `for_cycle`: the answer is the current request's own (its
        body timed out), not a refusal of what came after it."""
        self._in_head = False
        if not for_cycle and self.cycle is not None and not self.cycle.response_complete:
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
        self._close_after_answer()

    def _close_after_answer(self) -> None:
        """Half-close, then drop what the client still sends (bounded) until it is done too."""
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._lingering = True
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def bounded_protocol(
    max_head_bytes: int,
    head_timeout: float,
    body_timeout: float = DEFAULT_BODY_TIMEOUT_SECONDS,
) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for `uvicorn.run(http=...)` with these limits."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "max_head_bytes": max_head_bytes,
            "head_timeout": head_timeout,
            "body_timeout": body_timeout,
        },
    )
