"""The hostile corpus of tests/test_hostile_corpus.py: raw HTTP/1.1 requests, crafted byte by
byte (malformed request lines, headers, bodies and framing that httpx would refuse to send), one
TCP connection each, and the reader that tells an answer, a close and a hung connection apart.

Routes come from the app itself (`app_routes`), so a new route is in the corpus the day it lands.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from memory_service.app import create_app
from memory_service.settings import Settings, sqlite_url

CEILING = 10.0  # seconds: an answer or a close within this, or the connection is hung
# Auto-added by Litestar on every route; not a method a handler declares.
AUTO_METHODS = {"OPTIONS", "HEAD"}
STACK_TRACE = re.compile(rb'Traceback \(most recent call last\)|File "[^"]+", line \d+')


@dataclass(frozen=True)
class Context:
    """What the corpus addresses: keys of the victim (read and refused-write entries only),
    the scratch workspace (entries that may write) and the doomed workspace (admin entries)."""

    victim_key: str
    scratch_key: str
    doomed: str  # workspace name the admin entries address
    admin_token: str


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


@dataclass
class Outcome:
    answers: list[Answer] = field(default_factory=list)
    closed: bool = False  # the server closed (or reset) the connection
    hung: bool = False  # neither all answers nor a close within the ceiling
    raw: bytes = b""
    seconds: float = 0.0


@dataclass(frozen=True)
class Entry:
    id: str
    route: str  # the app's route template this entry addresses
    payload: bytes
    answers: int = 1  # final answers expected (pipelined entries send several requests)
    head: bool = False  # answers carry no body (HEAD)
    half_close: bool = False  # shut our write side after sending (the body is short on purpose)
    scratch: bool = False  # may write (to the scratch or doomed workspace)
    # An extra pin on the outcome (for the findings of issue 20): None when it holds.
    check: Callable[[Outcome], str | None] | None = None


# --- the app's routes -----------------------------------------------------------------------------


def app_routes() -> dict[str, list[str]]:
    """Every route of the app (template -> the methods its handlers declare), read from the app
    (no database is opened to build it)."""
    app = create_app(Settings(database_url=sqlite_url("/nonexistent/never-opened.db")))
    routes: dict[str, list[str]] = {}
    for route in app.routes:
        methods = sorted(getattr(route, "methods", set()) - AUTO_METHODS)
        routes[route.path] = methods or ["POST"]  # the ASGI mount (/mcp) takes POST
    return routes


def concrete(template: str, ctx: Context) -> str:
    """A request path for a route template: every parameter filled with something harmless."""
    out = template
    for param, value in (
        ("{key:path}", "corpus-key"),
        ("{block_id:path}", "corpus-block"),
        ("{key_id:int}", "999999999"),
        ("{path:str}", "openapi.json"),
    ):
        out = out.replace(param, value)
    if "{name:str}" in out:
        if out.startswith("/admin/"):
            value = ctx.doomed
        elif out.startswith("/api/tools/"):
            value = "memory_get"
        elif out.startswith("/ui/"):
            value = "app.js"
        else:
            value = "openapi.json"
        out = out.replace("{name:str}", value)
    assert "{" not in out, out
    return out


# --- building requests ----------------------------------------------------------------------------


def request(
    method: str,
    target: str | bytes,
    headers: list[bytes] | None = None,
    body: bytes = b"",
    *,
    version: bytes = b"HTTP/1.1",
    host: bool = True,
    length: bool = True,
) -> bytes:
    """One request, byte for byte; Content-Length is added for a body unless `length` is off."""
    t = target.encode() if isinstance(target, str) else target
    lines = [method.encode() + b" " + t + b" " + version]
    if host:
        lines.append(b"Host: 127.0.0.1")
    lines += headers or []
    if body and length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def bearer(key: str) -> bytes:
    return b"Authorization: Bearer " + key.encode()


JSON = b"Content-Type: application/json"
MCP_ACCEPT = b"Accept: application/json, text/event-stream"


def auth_for(route: str, method: str, ctx: Context) -> tuple[bytes, bool]:
    """The credential an entry of this route and method carries, and whether it may write:
    reads as the victim, writes as the scratch workspace, admin routes with the admin token."""
    if route.startswith("/admin/"):
        return bearer(ctx.admin_token), method != "GET"
    if method in ("GET", "HEAD", "OPTIONS"):
        return bearer(ctx.victim_key), False
    return bearer(ctx.scratch_key), True


def sample_body(route: str) -> bytes:
    """A plausible JSON body for a write to this route."""
    if route == "/api/memory":
        return b'{"conversationId": "corpus-c", "role": "user", "content": "x"}'
    if route.startswith("/api/memory/blocks"):
        return b'{"name": "corpus"}'
    if route.endswith("/invoke"):
        return b'{"parameters": {"conversationId": "corpus-c"}}'
    if route.endswith("/quota"):
        return b'{"quotaBytes": 1048576}'
    if route.startswith("/admin/"):
        return b'{"name": "corpus-new"}'
    if route == "/mcp":
        return b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}'
    return b"corpus value"


# --- reading answers ------------------------------------------------------------------------------


class _Incomplete(Exception):
    pass


def _parse(data: bytes, head_only: bool) -> tuple[Answer, bytes]:
    """One answer off the front of `data` (raises _Incomplete when more bytes are needed)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise _Incomplete
    lines = data[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = [(k.strip(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:])]
    rest = data[end + 4 :]
    answer = Answer(status, headers, b"")
    if head_only or status < 200 or status in (204, 304):
        return answer, rest
    if (answer.header("transfer-encoding") or "").lower() == "chunked":
        body = b""
        while True:
            line_end = rest.find(b"\r\n")
            if line_end < 0:
                raise _Incomplete
            size = int(rest[:line_end].split(b";")[0], 16)
            if len(rest) < line_end + 2 + size + 2:
                raise _Incomplete
            body += rest[line_end + 2 : line_end + 2 + size]
            rest = rest[line_end + 2 + size + 2 :]
            if size == 0:
                return Answer(status, headers, body), rest
    length = answer.header("content-length")
    if length is None:
        raise _Incomplete  # delimited by the close
    n = int(length)
    if len(rest) < n:
        raise _Incomplete
    return Answer(status, headers, rest[:n]), rest[n:]


def send(port: int, entry: Entry, ceiling: float = CEILING) -> Outcome:
    """Send an entry on a connection of its own; read until its answers are all in, the server
    closes, or the ceiling passes (then the connection is hung)."""
    out = Outcome()
    start = time.monotonic()
    deadline = start + ceiling
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=ceiling) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.sendall(entry.payload)
            if entry.half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # refused mid-send (e.g. a huge head): the server closed on us
            out.closed = True
        while not out.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                out.hung = True
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                out.hung = True
                break
            except OSError:
                chunk = b""
            if not chunk:
                out.closed = True
                break
            data += chunk
            out.raw += chunk
            try:
                while True:
                    answer, data = _parse(data, entry.head)
                    if answer.status >= 200:
                        out.answers.append(answer)
                    if len(out.answers) >= entry.answers:
                        break
            except _Incomplete:
                pass
            if len(out.answers) >= entry.answers:
                break
    if out.closed and data:  # an answer delimited by the close
        try:
            answer, _ = _parse(data + b"", True)
            end = data.find(b"\r\n\r\n")
            out.answers.append(Answer(answer.status, answer.headers, data[end + 4 :]))
        except (_Incomplete, ValueError, IndexError):
            pass
    out.seconds = time.monotonic() - start
    return out


def violations(entry: Entry, out: Outcome) -> list[str]:
    """What is wrong with an outcome, by the rules every answer obeys (empty when none is)."""
    found = []
    if out.hung:
        found.append(f"hung: {len(out.answers)} of {entry.answers} answers after {CEILING} s")
    if STACK_TRACE.search(out.raw):
        found.append("stack trace in the answer")
    for a in out.answers:
        if a.status >= 500:
            found.append(f"{a.status}: {a.body[:300]!r}")
        if 400 <= a.status < 500 and a.body:
            found += envelope_problems(a)
    if entry.check is not None:
        problem = entry.check(out)
        if problem:
            found.append(problem)
    return found


def envelope_problems(a: Answer) -> list[str]:
    try:
        body = json.loads(a.body)
    except ValueError:
        return [f"{a.status} answer is not JSON: {a.body[:200]!r}"]
    if not isinstance(body, dict):
        return [f"{a.status} answer is not an object: {body!r:.200}"]
    problems = []
    if body.get("success") is not False:
        problems.append(f"{a.status} envelope success is {body.get('success')!r}")
    for name in ("error", "message", "code"):
        if not isinstance(body.get(name), str) or not body[name]:
            problems.append(f"{a.status} envelope {name} is {body.get(name)!r}")
    return problems


# --- pins for the findings of issue 20 ------------------------------------------------------------


def status_is(*wanted: int) -> Callable[[Outcome], str | None]:
    def check(out: Outcome) -> str | None:
        got = [a.status for a in out.answers]
        return None if got and all(s in wanted for s in got) else f"want {wanted}, got {got}"

    return check


def code_is(status: int, code: str) -> Callable[[Outcome], str | None]:
    def check(out: Outcome) -> str | None:
        got = [(a.status, _code(a)) for a in out.answers]
        return None if got == [(status, code)] else f"want {(status, code)}, got {got}"

    return check


def _code(a: Answer) -> str | None:
    try:
        body = json.loads(a.body)
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


# --- the corpus -----------------------------------------------------------------------------------


DEEP = 100_000


def build(ctx: Context) -> list[Entry]:
    entries: list[Entry] = []

    def add(entry: Entry) -> None:
        entries.append(entry)

    routes = app_routes()
    for route, methods in routes.items():
        path = concrete(route, ctx)
        for method in methods:
            cred, writes = auth_for(route, method, ctx)
            body = b"" if method in ("GET", "DELETE") else sample_body(route)
            hdrs = [cred, JSON] if body else [cred]
            if route == "/mcp":
                hdrs.append(MCP_ACCEPT)
            tag = f"{method} {route}"
            add(Entry(f"{tag} plain", route, request(method, path, hdrs, body), scratch=writes))
            add(Entry(f"{tag} no credential", route, request(method, path, hdrs[1:], body)))
            bad = b"Authorization: Bearer msk_" + b"A" * 43
            add(Entry(f"{tag} wrong key", route, request(method, path, [bad, *hdrs[1:]], body)))
            add(
                Entry(
                    f"{tag} key of invalid UTF-8",
                    route,
                    request(method, path, [b"X-API-Key: \xff\xfe\x80", *hdrs[1:]], body),
                )
            )
            add(
                Entry(
                    f"{tag} query of invalid UTF-8",
                    route,
                    request(method, path + "?limit=%ff%fe&cursor=%c0%af", hdrs, body),
                    scratch=writes,
                )
            )
            add(
                Entry(
                    f"{tag} raw bytes of invalid UTF-8 in the path",
                    route,
                    request(method, path.encode() + b"\xff\xfe", hdrs, body),
                    scratch=writes,
                )
            )
            add(
                Entry(
                    f"{tag} NUL and control characters in the path",
                    route,
                    request(method, path + "%00%01%1b%7f", hdrs, body),
                    scratch=writes,
                )
            )
            add(
                Entry(
                    f"{tag} huge query",
                    route,
                    request(method, path + "?q=" + "x" * 60_000, hdrs, body),
                    scratch=writes,
                )
            )
            if body:
                add(
                    Entry(
                        f"{tag} Content-Length 10**30",
                        route,
                        request(
                            method,
                            path,
                            [*hdrs, b"Content-Length: " + b"9" * 30],
                            body,
                            length=False,
                        ),
                        half_close=True,
                        scratch=writes,
                    )
                )
                add(
                    Entry(
                        f"{tag} Content-Length negative",
                        route,
                        request(method, path, [*hdrs, b"Content-Length: -5"], body, length=False),
                        scratch=writes,
                    )
                )
            if route.startswith(("/api/", "/mcp")) or route == "/ui":
                # HEAD and OPTIONS on every route; HEAD answers like GET where GET exists.
                check = status_is(200) if method == "GET" and route in HEAD_200 else None
                if method == "GET" or route == "/mcp":
                    add(
                        Entry(
                            f"HEAD {route}",
                            route,
                            request("HEAD", path, [cred]),
                            head=True,
                            check=check,
                        )
                    )
            if method == methods[0]:
                add(Entry(f"OPTIONS {route}", route, request("OPTIONS", path, [cred])))
                add(
                    Entry(
                        f"{route} bad method",
                        route,
                        request("FROB", path, [cred]),
                    )
                )
                add(
                    Entry(
                        f"{route} HTTP/1.0 without Host",
                        route,
                        request("GET", path, [cred], version=b"HTTP/1.0", host=False),
                    )
                )
                add(
                    Entry(
                        f"{route} absolute-form target",
                        route,
                        request("GET", "http://127.0.0.1" + path, [cred]),
                    )
                )
                add(
                    Entry(
                        f"{route} oversized header",
                        route,
                        request("GET", path, [cred, b"X-Pad: " + b"p" * 70_000]),
                    )
                )
                add(
                    Entry(
                        f"{route} NUL in a header value",
                        route,
                        request("GET", path, [cred, b"X-Thing: a\x00b"]),
                    )
                )
                add(
                    Entry(
                        f"{route} pipelined three GETs",
                        route,
                        request("GET", path, [cred]) * 3,
                        answers=3,
                    )
                )

    add_body_variants(add, ctx)
    add_framing_variants(add, ctx)
    add_findings(add, ctx, routes)
    return entries


# Routes whose GET, as the victim with no parameters, is a 200 (so HEAD must be one too).
HEAD_200 = {
    "/api/kv",
    "/api/usage",
    "/api/memory/all",
    "/api/memory/blocks",
    "/api/tools",
    "/api/tools/{name:str}",
    "/api/tools.yaml",
    "/api/stats",
    "/api/kv/{key:path}",
    "/ui",
    "/ui/{name:str}",
}


def add_body_variants(add: Callable[[Entry], None], ctx: Context) -> None:
    """Hostile JSON to the victim's JSON routes: each must be refused, changing nothing."""
    victim = bearer(ctx.victim_key)
    nested = b"[" * DEEP + b"]" * DEEP
    bodies = {
        "malformed JSON": b'{"conversationId": "c", "role": ',
        "invalid UTF-8 in a string": b'{"conversationId": "c\xff\xfe", "role": "user"}',
        "lone surrogate escape": b'{"conversationId": "c", "role": "user\\ud800", "content": "x"}',
        "deep nesting": b'{"conversationId": "c", "role": "user", "content": ' + nested + b"}",
        "deep object nesting": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        "huge number": b'{"conversationId": "c", "role": "user", "content": "x", "lastN": 1'
        + b"0" * 5000
        + b"}",
        "huge float": b'{"conversationId": "c", "role": "user", "content": "x", "lastN": 1e999999}',
        "NUL in the role": b'{"conversationId": "c", "role": "us\\u0000er", "content": "x"}',
        "raw control characters": b'{"conversationId": "c\x01\x02", "role": "user"}',
        "a JSON array": b"[1, 2, 3]",
        "a JSON string": b'"just a string"',
        "JSON null": b"null",
        "empty body": b"",
        "trailing garbage": b'{"conversationId": "c", "role": "nobody", "content": "x"} trailing',
        "unknown role": b'{"conversationId": "c", "role": "nobody", "content": "x"}',
        "wrong types": b'{"conversationId": 5, "role": ["user"], "content": {"a": 1}}',
        "byte order mark": b'\xef\xbb\xbf{"conversationId": "c", "role": "nobody"}',
        "UTF-16 body": '{"conversationId": "c", "role": "nobody"}'.encode("utf-16"),
    }
    for name, body in bodies.items():
        for route, path in (
            ("/api/memory", "/api/memory"),
            ("/api/tools/{name:str}/invoke", "/api/tools/memory_add/invoke"),
        ):
            if route != "/api/memory":
                body = b'{"parameters": ' + body + b"}" if body else body
            add(
                Entry(
                    f"POST {route} {name}",
                    route,
                    request("POST", path, [victim, JSON], body),
                    check=status_is(400),
                )
            )
    for route, path in (
        ("/api/memory/blocks/{block_id:path}", "/api/memory/blocks/b"),
        ("/api/memory", "/api/memory"),
    ):
        method = "PUT" if "blocks" in route else "POST"
        for ctype in (
            b"text/plain",
            b"multipart/form-data; boundary=x",
            None,
            b"application/json; charset=latin-1\x00",
        ):
            hdrs = [victim] + ([b"Content-Type: " + ctype] if ctype else [])
            add(
                Entry(
                    f"{method} {route} content type {ctype!r}",
                    route,
                    request(method, path, hdrs, b'{"name": 5, "role": 7}'),
                    check=status_is(400, 415),
                )
            )
    # Keys the KV store must refuse, as the victim: nothing may be stored.
    for name, key in (
        ("key of 513 bytes", "k" * 513),
        ("key with NUL", "a%00b"),
        ("key with a newline", "a%0Ab"),
        ("key of invalid UTF-8", "%ff%fe"),
        ("key of DEL", "%7F"),
    ):
        add(
            Entry(
                f"PUT /api/kv/{{key}} {name}",
                "/api/kv/{key:path}",
                request("PUT", "/api/kv/" + key, [victim], b"v"),
                check=status_is(400),
            )
        )


def add_framing_variants(add: Callable[[Entry], None], ctx: Context) -> None:
    """Chunked bodies, Content-Length mismatches, Expect, pipelining, HTTP/1.0, absolute forms."""
    scratch = bearer(ctx.scratch_key)
    victim = bearer(ctx.victim_key)
    kv = "/api/kv/{key:path}"
    mem = "/api/memory"
    for route, path in ((kv, "/api/kv/framing"), (mem, "/api/memory")):
        body = sample_body(route)
        h = [scratch, JSON]
        frames = {
            "chunked": request(
                "PUT" if route == kv else "POST",
                path,
                [*h, b"Transfer-Encoding: chunked"],
                f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n",
                length=False,
            ),
            "chunked, bad size": request(
                "PUT" if route == kv else "POST",
                path,
                [*h, b"Transfer-Encoding: chunked"],
                b"zz\r\n" + body + b"\r\n0\r\n\r\n",
                length=False,
            ),
            "chunked, size beyond the data": request(
                "PUT" if route == kv else "POST",
                path,
                [*h, b"Transfer-Encoding: chunked"],
                b"ffff\r\n" + body,
                length=False,
            ),
            "chunked and Content-Length": request(
                "PUT" if route == kv else "POST",
                path,
                [*h, b"Transfer-Encoding: chunked", b"Content-Length: 3"],
                f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n",
                length=False,
            ),
            "Transfer-Encoding gzip, chunked": request(
                "PUT" if route == kv else "POST",
                path,
                [*h, b"Transfer-Encoding: gzip, chunked"],
                b"0\r\n\r\n",
                length=False,
            ),
            "two Content-Lengths": request(
                "PUT" if route == kv else "POST",
                path,
                [*h, b"Content-Length: 3", b"Content-Length: 50"],
                body,
                length=False,
            ),
            "Content-Length with a sign": request(
                "PUT" if route == kv else "POST",
                path,
                [*h, b"Content-Length: +" + str(len(body)).encode()],
                body,
                length=False,
            ),
            "extra bytes after the body": request(
                "PUT" if route == kv else "POST",
                path,
                [*h, b"Content-Length: " + str(len(body)).encode()],
                body + b"GARBAGE GARBAGE\r\n\r\n",
                length=False,
            ),
            "Expect: 100-continue": request(
                "PUT" if route == kv else "POST", path, [*h, b"Expect: 100-continue"], body
            ),
            "Expect: something else": request(
                "PUT" if route == kv else "POST", path, [*h, b"Expect: 200-ok"], body
            ),
            "HTTP/1.0 body": request(
                "PUT" if route == kv else "POST", path, h, body, version=b"HTTP/1.0"
            ),
            "version HTTP/2.0": request("GET", path, [victim], version=b"HTTP/2.0"),
            "version HTTP/9.9": request("GET", path, [victim], version=b"HTTP/9.9"),
            "no version": b"GET " + path.encode() + b"\r\n\r\n",
            "bare LF line ends": request("GET", path, [victim]).replace(b"\r\n", b"\n"),
            "space in the target": request("GET", path + " x", [victim]),
            "tab in a header name": request("GET", path, [victim, b"X\tBad: 1"]),
            "header without colon": request("GET", path, [victim, b"NoColonHere"]),
            "obsolete line folding": request("GET", path, [victim, b"X-Fold: a", b" continued"]),
            "5,000 headers": request(
                "GET", path, [victim, *(f"X-H{i}: v".encode() for i in range(5000))]
            ),
            "asterisk-form target": request("GET", "*", [victim]),
            "authority-form target": request("CONNECT", "127.0.0.1:80", [victim]),
            "lower-case method": request("get", path, [victim]),
            "method with NUL": request("GE\x00T", path, [victim]),
            "empty request line": b"\r\n\r\n",
            "TLS client hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        }
        for name, payload in frames.items():
            writes = b"100-continue" in payload or name in ("chunked", "HTTP/1.0 body")
            add(Entry(f"{route} {name}", route, payload, scratch=writes))
        # Short bodies with a valid key: the body never completes, so the client gives up
        # (half-close); the server must answer or close, not wait forever.
        add(
            Entry(
                f"{route} Content-Length 1000, 10 bytes, then EOF",
                route,
                request(
                    "PUT" if route == kv else "POST",
                    path,
                    [*h, b"Content-Length: 1000"],
                    b"0123456789",
                    length=False,
                ),
                half_close=True,
                scratch=True,
            )
        )
    # Connections that never begin a request: the head timeout answers them (408) and closes.
    for name, payload in (("nothing sent", b""), ("only blank lines", b"\r\n" * 10)):
        add(
            Entry(
                f"connection with {name}", "/health", payload, check=code_is(408, "request_timeout")
            )
        )
    # Pipelined writes and reads, and a pipelined request after a broken one.
    add(
        Entry(
            "pipelined PUT then GET",
            kv,
            request("PUT", "/api/kv/pipelined", [scratch], b"one")
            + request("GET", "/api/kv/pipelined", [scratch]),
            answers=2,
            scratch=True,
        )
    )
    add(
        Entry(
            "pipelined broken then GET",
            kv,
            request("POST", "/api/memory", [victim, JSON], b"{not json")
            + request("GET", "/api/usage", [victim]),
            answers=2,
        )
    )
    # A flood of bad credentials from one address: 401s, then 429s, never a 5xx.
    for i in range(40):
        add(
            Entry(
                f"bad credential flood {i}",
                "/api/usage",
                request(
                    "GET", "/api/usage", [b"Authorization: Bearer msk_flood" + str(i).encode()]
                ),
            )
        )


def add_findings(add: Callable[[Entry], None], ctx: Context, routes: dict[str, list[str]]) -> None:
    scratch = bearer(ctx.scratch_key)
    victim = bearer(ctx.victim_key)
    admin = bearer(ctx.admin_token)
    # Finding 1: no key, Content-Length 1000 and 10 bytes, connection kept open.
    for method, path, route in (
        ("PUT", "/api/kv/x", "/api/kv/{key:path}"),
        ("POST", "/api/memory", "/api/memory"),
    ):
        add(
            Entry(
                f"finding 1: {method} {path} no key, Content-Length 1000, 10 bytes",
                route,
                request(method, path, [JSON, b"Content-Length: 1000"], b"0123456789", length=False),
                check=code_is(401, "unauthorized"),
            )
        )
    # Finding 2: keys made of slashes, as the victim (no such key: 404) and on scratch (stored).
    for path in ("/api/kv/%2F", "/api/kv//", "/api/kv/%2F%2F"):
        add(
            Entry(
                f"finding 2: GET {path}",
                "/api/kv/{key:path}",
                request("GET", path, [victim]),
                check=code_is(404, "key_not_found"),
            )
        )
        add(
            Entry(
                f"finding 2: DELETE {path}",
                "/api/kv/{key:path}",
                request("DELETE", path, [victim]),
                check=code_is(404, "key_not_found"),
            )
        )
        add(
            Entry(
                f"finding 2: HEAD {path}",
                "/api/kv/{key:path}",
                request("HEAD", path, [victim]),
                head=True,
                check=status_is(404),
            )
        )
    add(
        Entry(
            "finding 2: PUT /api/kv/%2F%2F%2F",
            "/api/kv/{key:path}",
            request("PUT", "/api/kv/%2F%2F%2F", [scratch], b"slashes"),
            check=status_is(201),
            scratch=True,
        )
    )
    # Finding 3: Content-Encoding on writes, (on scratch: stored as it is today).
    packed = gzip.compress(b"hello")
    for enc in (b"gzip", b"br", b"deflate"):
        add(
            Entry(
                f"finding 3: PUT /api/kv with Content-Encoding {enc.decode()}",
                "/api/kv/{key:path}",
                request("PUT", "/api/kv/encoded", [scratch, b"Content-Encoding: " + enc], packed),
                check=status_is(415),
                scratch=True,
            )
        )
        add(
            Entry(
                f"finding 3: POST /api/memory with Content-Encoding {enc.decode()}",
                "/api/memory",
                request(
                    "POST",
                    "/api/memory",
                    [scratch, JSON, b"Content-Encoding: " + enc],
                    gzip.compress(b'{"conversationId": "enc", "role": "user", "content": "x"}'),
                ),
                check=status_is(415),
                scratch=True,
            )
        )
    # Finding 6: two credentials; repeated query parameters and JSON members; quota as a string.
    for name, creds in (
        ("two Authorization", [victim, bearer(ctx.scratch_key)]),
        ("the same Authorization twice", [victim, victim]),
        ("Authorization and X-API-Key", [victim, b"X-API-Key: " + ctx.scratch_key.encode()]),
    ):
        add(
            Entry(
                f"finding 6: {name}",
                "/api/usage",
                request("GET", "/api/usage", creds),
                check=status_is(400),
            )
        )
    for path in ("/api/kv?limit=1&limit=2", "/api/memory?conversationId=a&conversationId=b"):
        add(
            Entry(
                f"finding 6: repeated query {path}",
                path.split("?")[0] if "kv" in path else "/api/memory",
                request("GET", path, [victim]),
                check=status_is(400),
            )
        )
    add(
        Entry(
            "finding 6: repeated JSON members",
            "/api/memory",
            request(
                "POST",
                "/api/memory",
                [scratch, JSON],
                b'{"conversationId": "rep", "role": "nobody", "role": "user", "content": "x"}',
            ),
            check=status_is(400),
            scratch=True,
        )
    )
    add(
        Entry(
            "finding 6: admin quota as a string",
            "/admin/workspaces/{name:str}/quota",
            request(
                "PUT",
                f"/admin/workspaces/{ctx.doomed}/quota",
                [admin, JSON],
                b'{"quotaBytes": "1048576"}',
            ),
            check=status_is(400),
            scratch=True,
        )
    )
    # /mcp: refusals are the error envelope.
    for name, body, hdrs in (
        ("malformed JSON", b'{"jsonrpc": ', [victim, JSON, MCP_ACCEPT]),
        ("not JSON-RPC", b'{"hello": 1}', [victim, JSON, MCP_ACCEPT]),
        ("no Accept", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}', [victim, JSON]),
        (
            "wrong content type",
            b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}',
            [victim, MCP_ACCEPT],
        ),
        (
            "deep nesting",
            b'{"jsonrpc": "2.0", "id": 1, "params": ' + b"[" * DEEP + b"]" * DEEP + b"}",
            [victim, JSON, MCP_ACCEPT],
        ),
    ):
        add(
            Entry(
                f"finding 6: /mcp {name}",
                "/mcp",
                request("POST", "/mcp", hdrs, body),
                check=status_is(400, 406, 415),
            )
        )
