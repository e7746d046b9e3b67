"""The fence around http/protocol.py, which subclasses uvicorn's HttpToolsProtocol (an internal
class): what it overrides still exists in uvicorn with the same signature, none of its own state
collides with uvicorn's, and the behaviour it adds works on a real uvicorn server.

The refusals themselves (431 for a head too large in one read or spread over many, 408 for a
head dribbled forever, the answer arriving although the client still sends) are tested through
the whole service in tests/test_robustness.py. Here, a bare uvicorn server with the protocol
and small limits checks what those tests do not: the request line counts, the head timer stops
once a head is complete, an idle keep-alive connection is no slow head, pipelined requests
are each counted on their own, and an answer sent before its request's body closes the
connection, but not one sent while a pipelined request's body is still coming. (The body
timeout and the closing after early refusals are tested through the whole service in
tests/test_hostile_protocol.py.)
"""

from __future__ import annotations

import inspect
import json
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from memory_service.http.protocol import BoundedHttpToolsProtocol, bounded_protocol
from tests.support.server import free_port

MAX_HEAD = 1024
HEAD_TIMEOUT = 0.5  # seconds; the tests wait twice this where it must not matter
BODY_TIMEOUT = 3.0  # far past what the tests here wait for a body


def test_what_the_subclass_overrides_is_still_uvicorns() -> None:
    """Each method the subclass overrides exists on uvicorn's class with the same parameters;
    were one renamed, the override would silently stop being called."""
    ours = {
        name: member
        for name, member in vars(BoundedHttpToolsProtocol).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }
    assert set(ours) == {
        "connection_made",
        "data_received",
        "on_message_begin",
        "on_url",
        "on_header",
        "send_400_response",
        "on_headers_complete",
        "on_message_complete",
        "on_response_complete",
        "eof_received",
        "connection_lost",
    }
    for name, member in ours.items():
        theirs = getattr(HttpToolsProtocol, name, None)
        assert theirs is not None, f"uvicorn's HttpToolsProtocol has no {name} any more"
        assert list(inspect.signature(member).parameters) == list(
            inspect.signature(theirs).parameters
        ), name


def test_the_subclass_state_does_not_collide_with_uvicorns() -> None:
    """The subclass keeps its state in attributes of its own: a uvicorn release that used one of
    these names would share (and corrupt) it."""
    own = {
        name
        for name in vars(BoundedHttpToolsProtocol)
        if name.startswith("_") and not name.startswith("__")
    }
    assert {"_in_head", "_head_timer", "_in_body", "_body_timer", "_lingering", "_refuse"} <= own
    # Every attribute uvicorn's class has, or assigns on an instance anywhere in its module.
    theirs = set(dir(HttpToolsProtocol))
    theirs |= set(re.findall(r"self\.(\w+)\s*[:=]", inspect.getsource(httptools_impl)))
    assert "transport" in theirs and "loop" in theirs  # used by the subclass, set by uvicorn
    assert own.isdisjoint(theirs), own & theirs


def test_bounded_protocol_carries_its_limits() -> None:
    cls = bounded_protocol(1234, 5.5, 7.5)
    assert issubclass(cls, BoundedHttpToolsProtocol)
    assert (cls.max_head_bytes, cls.head_timeout, cls.body_timeout) == (1234, 5.5, 7.5)


# --- on a real uvicorn server ---------------------------------------------------------------------


async def _echo_app(scope: dict, receive, send) -> None:  # noqa: ANN001
    """Answers each request with its path and body, so a test sees what the server received."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/early":  # answered without reading the body, as a refusal is
        await send(
            {"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"{}"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = json.dumps({"path": scope["path"], "body": body.decode("latin-1")}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(answer)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        _echo_app,
        host="127.0.0.1",
        port=port,
        loop="asyncio",
        lifespan="off",
        http=bounded_protocol(MAX_HEAD, HEAD_TIMEOUT, BODY_TIMEOUT),
        log_level="warning",
        timeout_keep_alive=30,  # far past the head timeout: only the head timer could cut
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _responses(sock: socket.socket, count: int) -> list[tuple[int, dict]]:
    """Read `count` responses (each with a content-length) off the socket."""
    data = b""
    out = []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed after {len(out)} responses: {data!r}")
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(v)
            for k, _, v in (line.partition(": ") for line in lines[1:])
            if k.lower() == "content-length"
        )
        while len(data) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed mid-body")
            data += chunk
        body, data = data[:length], data[length:]
        out.append((status, json.loads(body)))
    return out


def test_a_request_line_over_the_limit_is_refused(port: int) -> None:
    """The URL counts toward the head's limit (on_url), not only the headers."""
    with _connect(port) as sock:
        sock.sendall(f"GET /{'u' * (MAX_HEAD + 100)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        ((status, body),) = _responses(sock, 1)
    assert status == 431
    assert body["code"] == "header_too_large" and body["success"] is False
    # Just under the limit is served.
    with _connect(port) as sock:
        sock.sendall(f"GET /{'u' * (MAX_HEAD - 100)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        ((status, body),) = _responses(sock, 1)
    assert status == 200 and body["path"] == "/" + "u" * (MAX_HEAD - 100)


def test_the_head_timer_stops_once_the_head_is_complete(port: int) -> None:
    """A head sent in two reads starts the timer; the head's end stops it, so a body that comes
    later than the head timeout is still received and answered."""
    with _connect(port) as sock:
        sock.sendall(b"PUT /slow-body HTTP/1.1\r\nHost: x\r\n")
        time.sleep(HEAD_TIMEOUT / 5)  # a read of its own: the head is incomplete after it
        sock.sendall(b"Content-Length: 4\r\n\r\n")
        time.sleep(HEAD_TIMEOUT * 2)
        sock.sendall(b"body")
        ((status, body),) = _responses(sock, 1)
    assert (status, body) == (200, {"path": "/slow-body", "body": "body"})


def test_an_idle_keep_alive_connection_is_not_a_slow_head(port: int) -> None:
    """Between requests a kept-alive connection may stay idle past the head timeout: no 408."""
    with _connect(port) as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _responses(sock, 1) == [(200, {"path": "/first", "body": ""})]
        time.sleep(HEAD_TIMEOUT * 2)
        sock.sendall(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _responses(sock, 1) == [(200, {"path": "/second", "body": ""})]


def test_pipelined_requests_are_each_counted_on_their_own(port: int) -> None:
    """Many requests in one read, together far over the limit, each under it: all served."""
    padding = "p" * 150
    requests = [
        f"PUT /pipe-{i} HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\nContent-Length: 2\r\n\r\n{i:02d}"
        for i in range(20)
    ]
    data = "".join(requests).encode()
    assert len(data) > 3 * MAX_HEAD
    with _connect(port) as sock:
        sock.sendall(data)
        got = _responses(sock, 20)
    assert got == [(200, {"path": f"/pipe-{i}", "body": f"{i:02d}"}) for i in range(20)]


def test_a_pipelined_request_whose_body_comes_later_is_served(port: int) -> None:
    """The first request's answer, sent while the second's body is still on its way, does not
    close the connection (only an answer to a request whose own body is incomplete does)."""
    with _connect(port) as sock:
        sock.sendall(
            b"PUT /one HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n01"
            b"PUT /two HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n02"
        )
        time.sleep(0.3)
        sock.sendall(b"02")
        got = _responses(sock, 2)
    assert got == [(200, {"path": "/one", "body": "01"}), (200, {"path": "/two", "body": "0202"})]


def test_an_answer_before_the_body_closes_the_connection(port: int) -> None:
    """Answered without its body being read, a request's connection is closed after the answer
    (not kept waiting for the 990 bytes announced and never sent)."""
    with _connect(port) as sock:
        sock.sendall(b"PUT /early HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        assert _responses(sock, 1) == [(401, {})]
        sock.settimeout(HEAD_TIMEOUT * 2)  # far below the keep-alive timeout (30 s here)
        assert sock.recv(100) == b""


def test_a_parser_error_is_answered_with_the_envelope(port: int) -> None:
    """uvicorn answers what httptools cannot parse with a text/plain 400; ours is the envelope."""
    for raw in (b"FR\x00B / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /\xff HTTP/1.1\r\n\r\n"):
        with _connect(port) as sock:
            sock.sendall(raw)
            ((status, body),) = _responses(sock, 1)
        assert status == 400
        assert body["code"] == "bad_request" and body["success"] is False, body
        assert body["error"] == body["message"] and "malformed" in body["error"]


@pytest.mark.parametrize("sent", [b"", b"\r\n\r\n"], ids=["nothing", "blank lines"])
def test_a_connection_that_never_begins_a_request_is_timed_out(port: int, sent: bytes) -> None:
    """uvicorn's keep-alive timer runs only between requests: a connection that sends nothing,
    or blank lines the parser skips, is answered 408 after the head timeout and closed."""
    with _connect(port) as sock:
        sock.sendall(sent)
        ((status, body),) = _responses(sock, 1)
        assert sock.recv(1) == b""  # and closed
    assert status == 408 and body["code"] == "request_timeout", body


def test_a_parser_error_behind_a_request_in_flight_closes_without_an_app_error(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage after a complete request, in one read: the request is still being answered when
    the parser fails, so the connection is closed (a half-close made the app's write raise)."""
    with caplog.at_level("ERROR"), _connect(port) as sock:
        sock.sendall(
            b"PUT /first HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nokGAR\x00BAGE\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        time.sleep(0.2)  # the app's write, after the close
    assert b"text/plain" not in data, data
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
