"""Structured logs: one JSON object per line on stderr, each carrying the request id it belongs to.

Secrets never reach a log: requests are logged by route template (never the raw path or query),
no header is logged, and as a last line of defence anything shaped like an API key is masked.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar

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


def configure_logging(level: str) -> None:
    """JSON lines to stderr for this process's every logger (uvicorn's included)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
