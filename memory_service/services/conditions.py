"""Conditional requests (RFC 9110 section 13) on KV entries, whose entity tag is `"<version>"`.

`If-Match` uses the strong comparison: a weak tag never matches, and any well-formed tag that is
not the current one fails the condition (412). `If-None-Match` uses the weak comparison: on GET
and HEAD a match (or `*` on a present entry) is "not modified" (304), on a write a 412. A header
that is not a list of entity tags (or `*`) is a 400: the client sent something else entirely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BadRequest, PreconditionFailed

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text
_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')
MAX_HEADER_CHARS = 8192  # a conditional header longer than this is not a list of our tags


@dataclass(frozen=True, slots=True)
class Tags:
    """A parsed If-Match / If-None-Match: `*`, or (weak, opaque-tag) pairs."""

    any: bool
    tags: tuple[tuple[bool, str], ...] = ()

    def strong_match(self, current: str) -> bool:
        return any(not weak and opaque == current for weak, opaque in self.tags)

    def weak_match(self, current: str) -> bool:
        return any(opaque == current for _weak, opaque in self.tags)


def parse_tags(header: str, name: str) -> Tags:
    value = header.strip()
    if value == "*":
        return Tags(any=True)
    if len(value) > MAX_HEADER_CHARS:
        raise BadRequest(f"{name} header is too long", code="invalid_precondition")
    tags = []
    pos = 0
    while pos < len(value):
        m = _TAG.match(value, pos)
        if m is None or m.end() == pos:
            raise BadRequest(
                f'malformed {name} header: expected * or entity tags like "5" or W/"5"',
                code="invalid_precondition",
            )
        tags.append((m.group(1) is not None, m.group(2)))
        pos = m.end()
    if not tags:
        raise BadRequest(f"{name} header is empty", code="invalid_precondition")
    return Tags(any=False, tags=tuple(tags))


def opaque(version: int) -> str:
    return str(version)


@dataclass(frozen=True, slots=True)
class Preconditions:
    """The conditional headers of one request, parsed (None: the header was not sent)."""

    if_match: Tags | None = None
    if_none_match: Tags | None = None

    @classmethod
    def parse(cls, if_match: str | None, if_none_match: str | None) -> Preconditions:
        return cls(
            None if if_match is None else parse_tags(if_match, "If-Match"),
            None if if_none_match is None else parse_tags(if_none_match, "If-None-Match"),
        )

    @property
    def empty(self) -> bool:
        return self.if_match is None and self.if_none_match is None

    def evaluate(self, current: int | None) -> bool:
        """RFC 9110 13.2.2 for the entry at version `current` (None: absent). Raises 412 when
        If-Match fails; returns False when If-None-Match fails (304 on a read, 412 on a write)."""
        tag = None if current is None else opaque(current)
        if self.if_match is not None:
            ok = tag is not None and (self.if_match.any or self.if_match.strong_match(tag))
            if not ok:
                if tag is None:
                    raise PreconditionFailed("If-Match given but the key does not exist")
                raise PreconditionFailed(
                    f'version mismatch: the entry is at "{tag}"', headers={"ETag": f'"{tag}"'}
                )
        inm = self.if_none_match
        return inm is None or tag is None or not (inm.any or inm.weak_match(tag))

    def check_write(self, current: int | None) -> None:
        """A write or delete: any failed condition is a 412 and changes nothing."""
        if not self.evaluate(current):
            # evaluate() is False only when If-None-Match was given and failed.
            exists = self.if_none_match is not None and self.if_none_match.any
            what = "key already exists" if exists else "entry is at that version"
            raise PreconditionFailed(f"{what} (If-None-Match)", headers={"ETag": f'"{current}"'})
