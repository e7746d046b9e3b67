"""What /mcp answers at the HTTP level, around the MCP SDK (http/mcp.py says which errors are
JSON-RPC and which are the service's envelope): the body read and bounded before the SDK reads
it again, and the SDK's refusals of the HTTP request rewritten as the error envelope.
"""

from __future__ import annotations

import msgspec
from litestar import Request
from litestar.types import HTTPResponseStartEvent, Message, Receive, ReceiveMessage, Send
from mcp_types.jsonrpc import PARSE_ERROR

from ..services.errors import BadRequest, TooLarge
from .errors import status_code_name


def _envelope(status: int, message: str, code: str) -> bytes:
    return msgspec.json.encode(
        {"success": False, "error": message, "message": message, "code": code}
    )


# What an SDK refusal with no body means (the 2026-07-28 transport sends some bare).
_BARE = {
    404: "no such endpoint",
    405: "method not allowed on /mcp: use POST",
    406: "not acceptable: /mcp answers application/json (send it in Accept)",
    415: "unsupported media type: /mcp takes application/json",
}


def refusal_of(status: int, sdk_body: bytes) -> bytes | None:
    """The envelope for one of the SDK's refusals, or None when it answers a JSON-RPC request
    (an error with the request's `id`: the protocol's own, whatever the status)."""
    try:
        answer = msgspec.json.decode(sdk_body)
        error = answer["error"]
        if answer.get("id") is not None:
            return None
        code, words = error.get("code"), str(error["message"])
    except Exception:  # not a JSON-RPC error: a short plain text, or the status, says what
        code, text = None, sdk_body[:200].decode("ascii", "replace")
        words = text if text.isprintable() else ""
    if status >= 500:
        return _envelope(status, "internal server error", "internal_error")
    if status == 400 and code == PARSE_ERROR:
        # The legacy transport gives the parser's words after "Parse error: ".
        detail = words.partition(":")[2].strip()
        message = f"request body is not valid JSON{': ' + detail if detail else ''}"
        return _envelope(status, message, "invalid_request")
    if status == 400 and words.startswith("Validation error"):
        # pydantic's account of a union over every message type, links included: too much.
        message = "request body is not a JSON-RPC 2.0 request, notification or response"
        return _envelope(status, message, "invalid_request")
    if status == 400:
        return _envelope(status, f"request body is not valid: {words}", "invalid_request")
    words = words or _BARE.get(status, f"request refused ({status})")
    return _envelope(status, words, status_code_name(status))


def enveloped(send: Send) -> Send:
    """`send` with each 4xx or 5xx refusal of the SDK that answers no JSON-RPC request
    rewritten as the service's envelope (see http/mcp.py's docstring)."""
    start: list[HTTPResponseStartEvent] = []
    held = bytearray()

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            start.append(message)
            return
        if not start or message["type"] != "http.response.body":
            await send(message)
            return
        held.extend(message.get("body", b""))
        if message.get("more_body", False):
            return
        status = start[0]["status"]
        body = refusal_of(status, bytes(held))
        if body is None:  # a JSON-RPC error for a request: as the SDK wrote it
            await send(start[0])
            await send({"type": "http.response.body", "body": bytes(held), "more_body": False})
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return wrapped


async def read_body(request: Request, receive: Receive, limit: int) -> bytes:
    """The whole body, refused as the tools' invoke refuses one beyond `limit` bytes. (Read
    from `receive`: Litestar's `Request.stream` wants an HTTP route handler's limits.)"""
    announced = request.headers.get("content-length")
    too_large = TooLarge(f"request body is larger than {limit} bytes", code="body_too_large")
    if announced and announced.isdigit() and int(announced) > limit:
        raise too_large
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left: nobody reads an answer
            raise BadRequest("request body incomplete: the client disconnected")
        body += message.get("body", b"")
        if len(body) > limit:
            raise too_large
        if not message.get("more_body", False):
            return bytes(body)


def replay(body: bytes, receive: Receive) -> Receive:
    """`receive` as if `body` had not been read from it yet."""
    pending = [body]

    async def again() -> ReceiveMessage:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return again
