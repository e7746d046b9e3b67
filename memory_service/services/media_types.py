"""Media types that a KV entry may be stored with, and how a stored value is served.

A stored type is sent back verbatim as a Content-Type header, so it must be one that HTTP can
carry: RFC 9110 `type "/" subtype *( OWS ";" OWS parameter )`, ASCII, at most 255 characters.
Anything else is refused (never truncated nor repaired), on every path that stores one.
"""

from __future__ import annotations

import functools
import re

from .errors import BadRequest

MAX_MEDIA_TYPE_CHARS = 255
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e]|\\[\t \x21-\x7e])*"'
_MEDIA_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))*[ \t]*(?:;[ \t]*)?"
)


def check_media_type(value: str) -> str:
    if len(value) > MAX_MEDIA_TYPE_CHARS:
        raise BadRequest(
            f"content type is {len(value)} characters; the maximum is {MAX_MEDIA_TYPE_CHARS}",
            code="invalid_content_type",
        )
    if not _MEDIA_TYPE.fullmatch(value):
        raise BadRequest(
            "content type must be a media type like 'text/plain; charset=utf-8' "
            "(RFC 9110: ASCII, type/subtype, optional parameters)",
            code="invalid_content_type",
        )
    return value


# Types a browser would run or render as a document of this origin: served as downloads.
_ACTIVE = re.compile(
    r"(text/html|application/xhtml\+xml|image/svg\+xml|text/xml|application/xml|"
    r"text/xsl|application/xslt\+xml|[a-z0-9.+-]+/[a-z0-9.-]+\+xml|"
    r"(text|application)/(x-)?(java|ecma|j|vb)script|text/css|application/pdf|"
    r"multipart/x-mixed-replace)",
)


def is_active(media_type: str) -> bool:
    essence = media_type.split(";", 1)[0].strip().lower()
    return _ACTIVE.fullmatch(essence) is not None


def value_headers(media_type: str) -> dict[str, str]:
    """Headers of every answer that serves stored bytes (GET and HEAD of a KV entry): the bytes
    are never sniffed into something else, never run as this origin's content, and active types
    are downloads, not pages."""
    return dict(_value_headers(media_type))


@functools.lru_cache(maxsize=256)  # a workspace serves few distinct types, read many times
def _value_headers(media_type: str) -> tuple[tuple[str, str], ...]:
    headers = [("X-Content-Type-Options", "nosniff"), ("Content-Security-Policy", "sandbox")]
    if is_active(media_type):
        headers.append(("Content-Disposition", "attachment"))
    return tuple(headers)
