"""Structured logs: one JSON object per line on stderr, each carrying the request id it belongs to.

Secrets never reach a log: requests are logged by route template (never the raw path or query),
no header is logged, and as a last line of defence anything shaped like an API key is masked.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections import deque
from contextvars import ContextVar
from typing import NamedTuple, Protocol

import msgspec

# Set by the HTTP middleware for the duration of a request; every record logged meanwhile
# (errors included) carries it.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_API_KEY_RE = re.compile(r"msk_[A-Za-z0-9_\-]{8,}")


def mask_secrets(text: str) -> str:
    return _API_KEY_RE.sub("msk_***", text) if "msk_" in text else text


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...fields}`; `extra={"fields": {...}}` adds keys."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            out["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return mask_secrets(json.dumps(out, default=str, ensure_ascii=False))


class JsonLinesHandler(logging.StreamHandler):
    """The handler `configure_logging` installs; its presence lets access lines take the fast
    path (`ThreadedAccessLog`) to the same stream."""


def configure_logging(level: str) -> None:
    """JSON lines to stderr for this process's every logger (uvicorn's included)."""
    handler = JsonLinesHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


ACCESS_LOGGER = "memory_service.access"


class AccessLog(Protocol):
    """Where the access line of each request goes."""

    def record(self, entry: AccessEntry) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


class AccessEntry(NamedTuple):
    """One request, as its access line tells it."""

    level: int
    request_id: str
    method: str
    route: str
    status: int
    seconds: float
    workspace: str | None


def access_fields(entry: AccessEntry) -> dict[str, object]:
    fields: dict[str, object] = {
        "method": entry.method,
        "route": entry.route,
        "status": entry.status,
        "duration_ms": round(entry.seconds * 1000, 3),
    }
    if entry.workspace is not None:
        fields["workspace"] = entry.workspace
    return fields


class LoggerAccessLog:
    """Access lines as ordinary log records, for an embedding application that set up logging
    its own way (its handlers, its format): slower, but it reaches them."""

    def __init__(self) -> None:
        self._log = logging.getLogger(ACCESS_LOGGER)

    def record(self, entry: AccessEntry) -> None:
        self._log.log(entry.level, "request", extra={"fields": access_fields(entry)})

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


class ThreadedAccessLog:
    """Access lines written by a thread of their own, many lines a write.

    Through `logging`, a line cost about 10 us on the event loop's thread (a LogRecord, the
    caller's frame looked up, `json.dumps`, a write and a flush each): a tenth or more of a small
    request. Here the request's thread only appends a tuple to a deque; every `INTERVAL` the
    writer builds the lines with msgspec and writes them in one call. It is not woken per line:
    a wake-up per request cost more than the line itself (the GIL handed back and forth). Nothing
    is dropped: the deque is unbounded, and `close` (at shutdown) writes what is left.
    """

    INTERVAL = 0.05  # seconds: how far behind the requests the log may run

    def __init__(self, handler: logging.StreamHandler) -> None:
        self._handler = handler
        self._pending: deque[tuple[float, AccessEntry]] = (
            deque()
        )  # append and popleft are atomic across threads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._encode = msgspec.json.Encoder().encode
        self._second = -1
        self._stamp = ""

    def record(self, entry: AccessEntry) -> None:
        stamped = (time.time(), entry)
        if self._thread is None:  # before start or after close: write it now
            self._write([stamped])
        else:
            self._pending.append(stamped)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
            self._thread.start()

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
            self._flush()  # what was appended while the writer finished

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self._flush()
        self._flush()

    def _flush(self) -> None:
        pending = self._pending
        self._write([pending.popleft() for _ in range(len(pending))])

    def _write(self, entries: list) -> None:
        if not entries:
            return
        text = mask_secrets("".join(map(self._line, entries)))
        self._handler.acquire()  # one stream shared with the other records
        try:
            self._handler.stream.write(text)
            self._handler.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr: nowhere left to write
            pass
        finally:
            self._handler.release()

    def _line(self, stamped: tuple[float, AccessEntry]) -> str:
        # The same object JsonFormatter writes for an access record, built by hand: a dict and
        # a general encoder cost several times more. Strings are JSON-encoded by msgspec.
        created, (level, request_id, method, route, status, seconds, workspace) = stamped
        second = int(created)
        if second != self._second:  # strftime once a second, not once a line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        enc = self._encode
        tail = "}\n" if workspace is None else f',"workspace":{enc(workspace).decode()}}}\n'
        return (
            f'{{"time":"{self._stamp}.{int((created - second) * 1000):03d}Z",'
            f'"level":"{logging.getLevelName(level)}","logger":"{ACCESS_LOGGER}",'
            f'"message":"request","request_id":{enc(request_id).decode()},'
            f'"method":{enc(method).decode()},"route":{enc(route).decode()},'
            f'"status":{status},"duration_ms":{round(seconds * 1000, 3)!r}{tail}'
        )


def access_log() -> AccessLog:
    """The fast writer when this process logs JSON lines through `configure_logging`, else
    plain log records for whatever logging the embedding application set up."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, JsonLinesHandler):
            return ThreadedAccessLog(handler)
    return LoggerAccessLog()
