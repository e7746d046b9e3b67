"""Bad clients on raw sockets: truncated bodies, wrong content types, huge headers, slow senders
and clients that vanish mid-body. None of them leaves a partial write, and none disturbs the
other clients, whose requests keep succeeding meanwhile (a "bystander" runs throughout).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.live import new_workspace
from tests.support.server import LiveServer

HEAD_TIMEOUT = 5.0  # the servers' MEMORY_HEADER_TIMEOUT_SECONDS; the slow tests stay below it


class Live:
    def __init__(self, server: LiveServer, key: str, bystander_key: str) -> None:
        self.server = server
        self.url = server.url
        self.port = server.port
        self.key = key
        self.auth = {"Authorization": f"Bearer {key}"}
        # The well-behaved client has its own workspace: its writes never move our usage.
        self.bystander_auth = {"Authorization": f"Bearer {bystander_key}"}

    def usage(self) -> int:
        r = httpx.get(f"{self.url}/api/usage", headers=self.auth)
        assert r.status_code == 200, r.text
        return r.json()["used"]

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.auth)

    def raw(self, head: str, body: bytes = b"") -> socket.socket:
        """Open a connection and send `head` (request line + headers, no blank line) + body."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        return sock


LIVE_SERVER_ENV = {"MEMORY_HEADER_TIMEOUT_SECONDS": str(HEAD_TIMEOUT)}


@pytest.fixture(scope="module")
def live(live_server: LiveServer) -> Live:
    return Live(
        live_server, new_workspace(live_server, "robust"), new_workspace(live_server, "bystander")
    )


def read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, bytes]:
    """Status and raw bytes of whatever the server answers before closing or `timeout`."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    None,
                )
                if length is not None and len(rest) >= length:
                    break
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data


class Bystander:
    """A well-behaved client that writes and reads its own keys in a loop, recording failures."""

    def __init__(self, live: Live, name: str) -> None:
        self.live = live
        self.name = name
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        auth = self.live.bystander_auth
        with httpx.Client(base_url=self.live.url, headers=auth, timeout=15) as c:
            while not self._stop.is_set():
                n += 1
                body = f"{self.name}-{n}".encode()
                try:
                    r = c.put(f"/api/kv/bystander-{self.name}-{n % 5}", content=body)
                    g = c.get(f"/api/kv/bystander-{self.name}-{n % 5}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if r.status_code not in (200, 201) or g.status_code != 200 or g.content != body:
                    self.failures.append(f"{r.status_code} {g.status_code} {g.content[:50]!r}")
                else:
                    self.ok += 1
                time.sleep(0.01)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # At least two whole requests after the bad client is done (bounded: a stuck server
        # fails the test below instead of hanging it).
        target, deadline = self.ok + 2, time.monotonic() + 30
        while self.ok < target and not self.failures and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stop.set()
        self._thread.join(30)
        assert not self.failures, self.failures[:5]
        assert self.ok >= target


def request_head(live: Live, method: str, path: str, **headers: object) -> str:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{live.port}"]
    lines += [f"Authorization: Bearer {live.key}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return "\r\n".join(lines)


def test_truncated_bodies_store_nothing(live: Live) -> None:
    before = live.usage()
    with Bystander(live, "trunc"):
        # Content-Length promises more than is sent, then the client closes.
        sock = live.raw(
            request_head(live, "PUT", "/api/kv/truncated", Content_Length=100_000), b"x" * 1000
        )
        sock.close()
        # Same, but the client half-closes and waits for whatever the server says.
        sock = live.raw(
            request_head(live, "PUT", "/api/kv/truncated2", Content_Length=5000), b"y" * 10
        )
        sock.shutdown(socket.SHUT_WR)
        status, answer = read_response(sock)
        sock.close()
        # The request never arrived whole: the connection is closed without an answer.
        assert (status, answer) == (0, b""), answer[:200]
        # A truncated JSON body on the memory API.
        body = json.dumps({"conversationId": "trunc", "role": "user", "content": "x" * 500})
        sock = live.raw(
            request_head(
                live,
                "POST",
                "/api/memory",
                Content_Type="application/json",
                Content_Length=len(body),
            ),
            body[: len(body) // 2].encode(),
        )
        sock.close()
        time.sleep(0.3)  # let the server notice the disconnects
    assert live.get("/api/kv/truncated").status_code == 404
    assert live.get("/api/kv/truncated2").status_code == 404
    memories = live.get("/api/memory?conversationId=trunc").json()
    assert memories["memories"] == []
    assert live.usage() == before


def test_disconnect_in_the_middle_of_a_large_put_leaves_the_old_value(live: Live) -> None:
    old = b"old value " * 100
    r = httpx.put(f"{live.url}/api/kv/big", content=old, headers=live.auth)
    assert r.status_code == 201, r.text
    before = live.usage()
    with Bystander(live, "midbody"):
        for _ in range(3):
            sock = live.raw(
                request_head(
                    live, "PUT", "/api/kv/big", Content_Length=8 * 1024 * 1024, If_Match="*"
                )
            )
            for _ in range(16):  # 1 MiB of the promised 8, in pieces
                sock.sendall(b"n" * 65536)
            sock.close()
            sock = live.raw(request_head(live, "PUT", "/api/kv/big-new", Content_Length=4_000_000))
            sock.sendall(b"n" * 1_000_000)
            sock.close()
        time.sleep(0.3)
    r = live.get("/api/kv/big")
    assert r.status_code == 200 and r.content == old
    assert live.get("/api/kv/big-new").status_code == 404
    assert live.usage() == before


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        # A JSON body is read as JSON whatever the label says (the body decides, not the type).
        ("text/plain", '{"conversationId": "ct", "role": "user", "content": "hi"}', 200),
        ("application/x-www-form-urlencoded", "conversationId=ct&role=user&content=hi", 400),
        ("multipart/form-data; boundary=xyz", "--xyz\r\nnonsense\r\n--xyz--", 400),
        ("application/json", "conversationId=ct&role=user&content=hi", 400),
        ("application/json; charset=latin-1", '{"conversationId": "ct", "role": "user", ', 400),
        ("image/png", "\x89PNG\r\n\x1a\n", 400),
    ],
)
def test_wrong_content_type_is_refused_or_understood_never_half_done(
    live: Live, content_type: str, body: str, expected: int
) -> None:
    before = (live.get("/api/memory?conversationId=ct").json()["memories"], live.usage())
    r = httpx.post(
        f"{live.url}/api/memory",
        content=body.encode("latin-1"),
        headers={**live.auth, "Content-Type": content_type},
    )
    assert r.status_code == expected, r.text
    after = live.get("/api/memory?conversationId=ct").json()["memories"]
    if expected == 400:
        assert r.json()["success"] is False and r.json()["error"]
        assert (after, live.usage()) == before
    else:  # understood: exactly the one message, as sent
        count = before[0][0]["messageCount"] if before[0] else 0
        assert after[0]["messageCount"] == count + 1
        assert after[0]["data"][-1]["content"] == "hi"


def test_a_kv_value_is_stored_whatever_its_content_type(live: Live) -> None:
    """KV values are raw bytes: the Content-Type is kept as metadata, never parsed."""
    for i, (ctype, value) in enumerate(
        [
            ("application/json", b"{not json"),
            ("application/x-www-form-urlencoded", b"\x00\xff=&"),
            ("multipart/form-data; boundary=q", b"--q--"),
        ]
    ):
        r = httpx.put(
            f"{live.url}/api/kv/typed", content=value, headers={**live.auth, "Content-Type": ctype}
        )
        assert r.status_code == (201 if i == 0 else 200), r.text  # created, then replaced
        g = live.get("/api/kv/typed")
        assert g.content == value and g.headers["content-type"].startswith(ctype.split(";")[0])


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Junk": "a" * 30_000}, 201),  # large, but under MEMORY_MAX_HEADER_BYTES (64 KiB)
        ({"X-Junk": "a" * 100_000}, 431),
        ({f"X-Many-{i}": "b" * 100 for i in range(1000)}, 431),
        ({"Authorization": "Bearer " + "c" * 100_000}, 431),
        ({"If-Match": ", ".join(f'"{i}"' for i in range(20_000))}, 431),
    ],
    ids=["30k-header", "100k-header", "1000-headers", "100k-authorization", "100k-if-match"],
)
def test_huge_headers_get_a_clean_answer(
    live: Live, headers: dict[str, str], expected: int
) -> None:
    before = live.usage()
    key = f"huge-header-{len(headers)}-{len(next(iter(headers.values())))}"
    with Bystander(live, "headers"):
        head = request_head(live, "PUT", f"/api/kv/{key}", Content_Length=3)
        if "Authorization" in headers:
            head = head.replace(f"Authorization: Bearer {live.key}\r\n", "")
        head += "".join(f"\r\n{k}: {v}" for k, v in headers.items())
        sock = live.raw(head, b"abc")
        status, answer = read_response(sock)
        sock.close()
    assert status == expected, answer[:300]
    if status == 201:
        assert live.get(f"/api/kv/{key}").content == b"abc"
        assert live.usage() == before + len(key) + 3
    else:
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["code"] == "header_too_large"
        assert live.get(f"/api/kv/{key}").status_code == 404
        assert live.usage() == before


def test_an_endless_header_is_cut_off(live: Live) -> None:
    """The server stops reading a head past its limit instead of buffering it all."""
    with Bystander(live, "endless"):
        sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
        head = request_head(live, "PUT", "/api/kv/endless", Content_Length=3)
        sock.sendall(head.encode() + b"\r\nX-Endless: ")
        sent = 0
        with contextlib.suppress(ConnectionError):
            while sent < 50_000_000:
                sock.sendall(b"e" * 65536)
                sent += 65536
        status, _ = read_response(sock)
        sock.close()
    assert sent < 50_000_000, "the server kept reading a 50 MB header"
    # The server half-closes after its answer and drops what still comes (a bounded linger), so
    # the 431 arrives even though the client was still sending.
    assert status == 431
    assert live.get("/api/kv/endless").status_code == 404


def test_a_head_that_never_ends_is_timed_out(live: Live) -> None:
    """Slowloris: a head dribbled a byte at a time is cut off after MEMORY_HEADER_TIMEOUT_SECONDS
    (HEAD_TIMEOUT here), however steadily the bytes come."""
    with Bystander(live, "never-ends"):
        sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
        sock.sendall(b"GET /api/usage HTTP/1.1\r\nX-Slow: ")
        closed = False
        for _ in range(int(HEAD_TIMEOUT * 10) + 200):  # far past the timeout
            try:
                sock.sendall(b"s")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.1)
        answer = read_response(sock, timeout=1)[1] if closed else b""
        sock.close()
    assert closed, "the server kept a never-ending head open"
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_slow_clients_do_not_hold_up_the_others(live: Live) -> None:
    """Slowloris-style senders (a byte every 100 ms) while others go on at full speed; each slow
    request, once complete, is served correctly."""
    body = b"slow body!"
    requests = []
    for i in range(8):
        head = request_head(live, "PUT", f"/api/kv/slow-{i}", Content_Length=len(body))
        requests.append((head + "\r\n\r\n").encode() + body)
    socks = [socket.create_connection(("127.0.0.1", live.port), timeout=30) for _ in requests]
    with Bystander(live, "slowloris") as bystander:
        # ~30 bytes per request get sent slowly (3 s), the rest at once at the end.
        for step in range(30):
            for sock, req in zip(socks, requests, strict=True):
                sock.sendall(req[step : step + 1])
            time.sleep(0.1)
        ok_while_slow = bystander.ok
        for sock, req in zip(socks, requests, strict=True):
            sock.sendall(req[30:])
        statuses = [read_response(sock)[0] for sock in socks]
        for sock in socks:
            sock.close()
    assert ok_while_slow >= 3, "the other clients were held up by the slow ones"
    assert statuses == [201] * len(socks), statuses
    for i in range(len(socks)):
        assert live.get(f"/api/kv/slow-{i}").content == body


def test_slow_clients_that_give_up_leave_nothing(live: Live) -> None:
    before = live.usage()
    with Bystander(live, "giveup"):
        socks = []
        for i in range(10):
            head = request_head(live, "PUT", f"/api/kv/gaveup-{i}", Content_Length=1000)
            sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
            sock.sendall((head + "\r\n\r\n").encode())
            socks.append(sock)
        for _ in range(20):  # a byte of body every 100 ms, then vanish
            for sock in socks:
                sock.sendall(b"z")
            time.sleep(0.1)
        for sock in socks:
            sock.close()
        time.sleep(0.3)
    for i in range(10):
        assert live.get(f"/api/kv/gaveup-{i}").status_code == 404
    assert live.usage() == before


def test_garbage_on_the_wire_gets_a_4xx(live: Live) -> None:
    with Bystander(live, "garbage"):
        for junk, expected in [
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100, 400),  # TLS hello
            (b"GET / HTTP/9.9\r\n\r\n", 400),
            (b"PUT /api/kv/x HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
            (b"PUT /api/kv/x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
            (b"PUT /api/kv/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
            (b"\r\n" * 1000 + b"GET /api/usage HTTP/1.1\r\nHost: x\r\n\r\n", 401),  # no key
        ]:
            sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
            sock.sendall(junk)
            status, _ = read_response(sock, timeout=5)
            sock.close()
            assert status == expected, (junk[:40], status)


@pytest.fixture(autouse=True)
def _no_traceback_in_this_tests_log(live: Live) -> Iterator[None]:
    """Each test, whatever ran before it, leaves no stack trace in the server's log: the check
    reads the part of the log written while the test ran (anything logged late lands in the
    next test's part, so it is still seen)."""
    start = len(live.server.log_text())
    yield
    window = live.server.log_text()[start:]
    assert "Traceback" not in window and '"level": "ERROR"' not in window, window[-3000:]
