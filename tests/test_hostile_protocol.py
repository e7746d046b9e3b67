"""Hostile clients at the protocol's edges (issue 20): connections held with a body announced and
never sent, bodies sent with a Content-Encoding, and requests that carry two credentials.

- A request without a good key is refused (401) before its body is read, and its connection is
  closed at once: 50 such connections announcing 1000 bytes and sending 10 are all answered and
  closed, on the fast paths and on the Litestar routes, the admin API and /mcp.
- A request with a good key whose body does not arrive within MEMORY_BODY_TIMEOUT_SECONDS (short
  here) gets 408 `request_timeout` and its connection is closed, however steadily its bytes
  come; nothing is stored.
- A body with a Content-Encoding other than `identity` is a 415 `unsupported_content_encoding`.
- Two credentials in one request (two Authorization, two X-API-Key, or one of each) are a 400
  `ambiguous_credentials` on every authenticated route.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Api
from tests.support.live import ADMIN, new_workspace
from tests.support.server import LiveServer

BODY_TIMEOUT = 2.0  # the live servers' MEMORY_BODY_TIMEOUT_SECONDS
# Far below uvicorn's keep-alive timeout (5 s), which would close an idle connection anyway: a
# connection still open this long after its answer was kept waiting for its body.
CLOSED_WITHIN = 1.5
LIVE_SERVER_ENV = {
    "MEMORY_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
    # 50 unknown keys from one address are not what is tested here (that bound is tested apart).
    "MEMORY_AUTH_FAILURE_BURST": "10000",
}
MEMORY = json.dumps({"conversationId": "held", "role": "user", "content": "x"}).encode()


@pytest.fixture(scope="module")
def key(live_server: LiveServer) -> str:
    return new_workspace(live_server, "hostile-protocol")


def head(server: LiveServer, method: str, path: str, *headers: str, length: int = 1000) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", *headers]
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def open_with(server: LiveServer, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(data)
    return sock


def answer_and_close(
    sock: socket.socket, timeout: float, head_only: bool = False, wait_close: bool = True
) -> tuple[int, dict, bool]:
    """The status and JSON body the server answers within `timeout`, and whether it then closed
    the connection (an end of file within CLOSED_WITHIN of the answer)."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while b"\r\n\r\n" not in data or (
            not head_only and len(data.partition(b"\r\n\r\n")[2]) < _length(data)
        ):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    raw = data.partition(b"\r\n\r\n")[2]
    body = json.loads(raw) if raw else {}
    if not wait_close:
        return status, body, False
    sock.settimeout(CLOSED_WITHIN)
    closed = False
    with contextlib.suppress(TimeoutError):
        try:
            closed = sock.recv(65536) == b""
        except ConnectionResetError:
            closed = True
    return status, body, closed


def exchange(
    server: LiveServer, method: str, path: str, headers: list[str], body: bytes = b""
) -> tuple[int, dict]:
    """One request on its own connection, its headers sent exactly as given (repeats too)."""
    sock = open_with(server, head(server, method, path, *headers, length=len(body)) + body)
    status, answer, _ = answer_and_close(
        sock, timeout=10, head_only=method == "HEAD", wait_close=False
    )
    sock.close()
    return status, answer


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def kv(server: LiveServer, key: str, name: str) -> httpx.Response:
    return httpx.get(f"{server.url}/api/kv/{name}", headers={"Authorization": f"Bearer {key}"})


def memories(server: LiveServer, key: str, conversation: str) -> list:
    r = httpx.get(
        f"{server.url}/api/memory",
        params={"conversationId": conversation},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    return r.json()["memories"]


# --- 1a: no good key, a body announced and not sent ---------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("PUT", "/api/kv/held"), ("POST", "/api/memory")], ids=["kv", "memory"]
)
def test_50_unauthenticated_held_bodies_are_refused_and_closed_at_once(
    live_server: LiveServer, key: str, method: str, path: str
) -> None:
    """Content-Length 1000, 10 bytes sent, no key (or an unknown one): each gets its 401 without
    the server waiting for the body (a wait would end in the body timeout's 408) and its
    connection closed."""
    socks = [
        open_with(
            live_server,
            head(live_server, method, path, *(["X-API-Key: ms_unknown"] if i % 2 else []))
            + MEMORY[:10],
        )
        for i in range(50)
    ]
    answers = [answer_and_close(sock, timeout=BODY_TIMEOUT / 2) for sock in socks]
    for sock in socks:
        sock.close()
    assert [(status, body.get("code")) for status, body, _ in answers] == [
        (401, "unauthorized")
    ] * 50
    assert all(body["success"] is False for _, body, _ in answers)
    assert [closed for _, _, closed in answers] == [True] * 50
    assert kv(live_server, key, "held").status_code == 404
    assert memories(live_server, key, "held") == []


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("PUT", "/api/kv/held?ttl=1e3", "unauthorized"),  # not a fast path's query: Litestar's
        ("PUT", "/api/memory/blocks/held", "unauthorized"),
        ("POST", "/api/tools/memory_add/invoke", "unauthorized"),
        ("POST", "/mcp", "unauthorized"),
        ("POST", "/admin/workspaces", "admin_unauthorized"),
    ],
)
def test_every_route_refuses_a_held_body_without_a_key_at_once(
    live_server: LiveServer, key: str, method: str, path: str, code: str
) -> None:
    sock = open_with(live_server, head(live_server, method, path) + MEMORY[:10])
    status, body, closed = answer_and_close(sock, timeout=BODY_TIMEOUT / 2)
    sock.close()
    assert (status, body.get("code"), closed) == (401, code, True)
    assert kv(live_server, key, "held").status_code == 404


# --- 1b: a good key, a body that does not arrive ------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/kv/never"),  # the fast path
        ("PUT", "/api/kv/never?ttl=1e3"),  # Litestar's route
        ("POST", "/api/memory"),
    ],
    ids=["kv-fast", "kv-litestar", "memory"],
)
def test_a_body_that_does_not_arrive_is_timed_out(
    live_server: LiveServer, key: str, method: str, path: str
) -> None:
    request_id = f"body-timeout-{time.monotonic_ns()}"
    sock = open_with(
        live_server,
        head(
            live_server, method, path, f"Authorization: Bearer {key}", f"X-Request-ID: {request_id}"
        )
        + MEMORY[:10],
    )
    status, body, closed = answer_and_close(sock, timeout=BODY_TIMEOUT * 5)
    sock.close()
    assert (status, body.get("code"), closed) == (408, "request_timeout", True), body
    assert body == {
        "success": False,
        "error": f"request body not received within {BODY_TIMEOUT:g} s",
        "message": f"request body not received within {BODY_TIMEOUT:g} s",
        "code": "request_timeout",
    }
    assert kv(live_server, key, "never").status_code == 404
    assert memories(live_server, key, "held") == []
    # Its access line says what the client was answered.
    assert f'"request_id":"{request_id}"' in access_line(live_server, request_id)
    assert '"status":408' in access_line(live_server, request_id)


def access_line(server: LiveServer, request_id: str) -> str:
    deadline = time.monotonic() + 5  # access lines are written at most 50 ms behind
    while True:
        for line in server.log_text().splitlines():
            if f'"request_id":"{request_id}"' in line and '"message":"request"' in line:
                return line
        assert time.monotonic() < deadline, f"no access line for {request_id}"
        time.sleep(0.05)


def test_a_body_dribbled_steadily_is_cut_at_the_total_time(
    live_server: LiveServer, key: str
) -> None:
    """A byte every 0.2 s: each byte would restart a per-read timer; the bound is on the whole."""
    sock = open_with(
        live_server, head(live_server, "PUT", "/api/kv/dribbled", f"Authorization: Bearer {key}")
    )
    start = time.monotonic()
    cut = False
    while time.monotonic() - start < BODY_TIMEOUT * 5:  # far past the timeout
        try:
            sock.sendall(b"d")
        except (BrokenPipeError, ConnectionResetError):
            cut = True
            break
        time.sleep(0.2)
        sock.settimeout(0.001)
        with contextlib.suppress(TimeoutError):
            if sock.recv(1, socket.MSG_PEEK):
                cut = True
                break
    sock.settimeout(5)
    status, body, _ = answer_and_close(sock, timeout=5)
    sock.close()
    assert cut, "the server kept reading a body dribbled past its timeout"
    assert (status, body.get("code")) == (408, "request_timeout")
    assert kv(live_server, key, "dribbled").status_code == 404


def test_a_body_that_arrives_in_time_in_pieces_is_stored(live_server: LiveServer, key: str) -> None:
    sock = open_with(
        live_server,
        head(live_server, "PUT", "/api/kv/pieces", f"Authorization: Bearer {key}", length=9),
    )
    for piece in (b"in ", b"thr", b"ee!"):
        time.sleep(0.1)
        sock.sendall(piece)
    status, body, _ = answer_and_close(sock, timeout=5)
    sock.close()
    assert (status, body.get("success")) == (201, True)
    assert kv(live_server, key, "pieces").content == b"in three!"


# --- 2: Content-Encoding ------------------------------------------------------------------------


MCP_CALL = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "storage_set", "arguments": {"key": "encoded", "value": "x"}},
    }
).encode()


WRITES = [
    ("PUT", "/api/kv/encoded", b"\x1f\x8b plain bytes"),  # the fast path
    ("PUT", "/api/kv/encoded?ttl=1e3", b"\x1f\x8b plain bytes"),  # Litestar's route
    (
        "POST",
        "/api/memory",
        json.dumps({"conversationId": "enc", "role": "user", "content": "x"}).encode(),
    ),
    ("PUT", "/api/memory/blocks/encoded", json.dumps({"name": "n"}).encode()),
    (
        "POST",
        "/api/tools/storage_set/invoke",
        json.dumps({"parameters": {"key": "encoded", "value": "x"}}).encode(),
    ),
]


@pytest.mark.parametrize(
    "encoding", ["gzip", "br", "deflate", "GZIP", "identity, gzip", "x-custom"]
)
async def test_an_encoded_body_is_refused_and_nothing_stored(api: Api, encoding: str) -> None:
    key = await api.workspace(f"enc-{len(encoding)}-{encoding[:2].lower()}")
    for method, path, body in WRITES:
        r = await api.client.request(
            method, path, content=body, headers={**key, "Content-Encoding": encoding}
        )
        assert r.status_code == 415, (path, r.status_code, r.text)
        answer = r.json()
        assert (answer["success"], answer["code"]) == (False, "unsupported_content_encoding")
        assert repr(encoding) in answer["error"], answer
    r = await api.client.post(
        "/mcp",
        content=MCP_CALL,
        headers={
            **key,
            "Content-Encoding": encoding,
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
    )
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_content_encoding")
    r = await api.client.post(
        "/admin/workspaces",
        content=json.dumps({"name": "encoded"}).encode(),
        headers={**api.admin, "Content-Encoding": encoding},
    )
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_content_encoding")
    # Nothing was stored by any of them.
    assert (await api.client.get("/api/kv/encoded", headers=key)).status_code == 404
    r = await api.client.get("/api/memory?conversationId=enc", headers=key)
    assert r.json()["memories"] == []
    r = await api.client.get("/api/memory/blocks", headers=key)
    assert r.json()["blocks"] == [], r.text
    assert (await api.client.get("/admin/workspaces/encoded", headers=api.admin)).status_code == 404


def test_a_second_content_encoding_header_is_seen(live_server: LiveServer, key: str) -> None:
    """Sent twice (which an in-process client would merge into one): the second counts too."""
    body = json.dumps({"conversationId": "twice", "role": "user", "content": "x"}).encode()
    for method, path in (("PUT", "/api/kv/twice"), ("POST", "/api/memory")):
        status, answer = exchange(
            live_server,
            method,
            path,
            [f"Authorization: Bearer {key}", "Content-Encoding: identity", "Content-Encoding: br"],
            body,
        )
        assert (status, answer["code"]) == (415, "unsupported_content_encoding"), answer
    assert kv(live_server, key, "twice").status_code == 404
    assert memories(live_server, key, "twice") == []


@pytest.mark.parametrize("encoding", ["identity", "IDENTITY", " Identity "])
async def test_identity_is_no_encoding(api: Api, encoding: str) -> None:
    key = await api.workspace(f"enc-identity-{encoding.strip()}")
    r = await api.client.put(
        "/api/kv/plain", content=b"plain", headers={**key, "Content-Encoding": encoding}
    )
    assert r.status_code == 201, r.text
    r = await api.client.put(
        "/api/kv/plain2?ttl=1e3", content=b"plain", headers={**key, "Content-Encoding": encoding}
    )
    assert r.status_code == 201, r.text
    r = await api.client.post(
        "/api/memory",
        json={"conversationId": "plain", "role": "user", "content": "x"},
        headers={**key, "Content-Encoding": encoding},
    )
    assert r.status_code == 200, r.text
    assert (await api.client.get("/api/kv/plain", headers=key)).content == b"plain"


async def test_a_read_is_not_refused_for_its_content_encoding(api: Api) -> None:
    """The 415 is about a body: a GET naming an encoding (of no body) is answered as usual."""
    key = await api.workspace("enc-read")
    r = await api.client.get("/api/kv/absent", headers={**key, "Content-Encoding": "gzip"})
    assert (r.status_code, r.json()["code"]) == (404, "key_not_found")


# --- 3: two credentials -------------------------------------------------------------------------


def _two(secret: str) -> dict[str, list[str]]:
    return {
        "two Authorization": [f"Authorization: Bearer {secret}"] * 2,
        "two X-API-Key": [f"X-API-Key: {secret}"] * 2,
        "Authorization and X-API-Key": [f"Authorization: Bearer {secret}", f"X-API-Key: {secret}"],
        "a good one and another": [f"Authorization: Bearer {secret}", "X-API-Key: ms_x"],
    }


ROUTES = [
    ("GET", "/api/kv/k", None),  # fast path
    ("HEAD", "/api/kv/k", None),
    ("PUT", "/api/kv/k", b"two"),  # fast path
    ("PUT", "/api/kv/k?ttl=1e3", b"two"),
    ("DELETE", "/api/kv/k", None),
    ("GET", "/api/kv", None),
    ("GET", "/api/usage", None),
    ("GET", "/api/memory?conversationId=c&lastN=20", None),  # fast path
    (
        "POST",
        "/api/memory",
        json.dumps({"conversationId": "c", "role": "user", "content": "x"}).encode(),
    ),
    ("GET", "/api/memory/all", None),
    ("PUT", "/api/memory/blocks/b", json.dumps({"name": "n"}).encode()),
    ("GET", "/api/stats", None),
    ("GET", "/api/tools", None),
    (
        "POST",
        "/api/tools/storage_set/invoke",
        json.dumps({"parameters": {"key": "k", "value": "two"}}).encode(),
    ),
]


def test_two_credentials_are_ambiguous_on_every_route(live_server: LiveServer, key: str) -> None:
    """On raw sockets: an in-process client would merge a repeated header into one."""
    assert exchange(live_server, "PUT", "/api/kv/k", [f"Authorization: Bearer {key}"], b"kept")[
        0
    ] in (
        200,
        201,
    )
    mcp = [
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
    ]
    for why, headers in _two(key).items():
        for method, path, body in [*ROUTES, ("POST", "/mcp", MCP_CALL)]:
            extra = mcp if path == "/mcp" else []
            status, answer = exchange(live_server, method, path, [*headers, *extra], body or b"")
            assert status == 400, (why, method, path, status, answer)
            if method != "HEAD":
                assert answer["code"] == "ambiguous_credentials", (why, path, answer)
    # The admin token is a credential too.
    token = ADMIN["Authorization"].removeprefix("Bearer ")
    for why, headers in _two(token).items():
        status, answer = exchange(live_server, "GET", "/admin/workspaces", headers)
        assert (status, answer["code"]) == (400, "ambiguous_credentials"), why
        body = json.dumps({"name": "ambiguous"}).encode()
        status, answer = exchange(live_server, "POST", "/admin/workspaces", headers, body)
        assert (status, answer["code"]) == (400, "ambiguous_credentials"), why
    # Nothing was changed by the refused writes.
    r = kv(live_server, key, "k")
    assert (r.status_code, r.content) == (200, b"kept")
    assert memories(live_server, key, "c") == []
    r = httpx.get(f"{live_server.url}/admin/workspaces/ambiguous", headers=ADMIN)
    assert r.status_code == 404


async def test_one_credential_works_either_way(api: Api) -> None:
    key = await api.workspace("one-credential")
    secret = key["Authorization"].removeprefix("Bearer ")
    for status, headers in (
        (201, {"Authorization": f"Bearer {secret}"}),
        (200, {"X-API-Key": secret}),
    ):
        r = await api.client.put("/api/kv/one", content=b"1", headers=headers)
        assert r.status_code == status, r.text
        r = await api.client.get("/api/kv/one", headers=headers)
        assert (r.status_code, r.content) == (200, b"1")


@pytest.fixture(autouse=True)
def _quiet(request: pytest.FixtureRequest) -> Iterator[None]:
    """The live tests leave no stack trace or error in the server's log."""
    if "live_server" not in request.fixturenames:
        yield
        return
    server: LiveServer = request.getfixturevalue("live_server")
    start = len(server.log_text())
    yield
    window = server.log_text()[start:]
    assert "Traceback" not in window and '"level": "ERROR"' not in window, window[-3000:]
