"""Checks on text that clients name things with."""

from __future__ import annotations

import unicodedata

CONTROL = frozenset(("Cc",))


def has_control(value: str, categories: frozenset[str] = CONTROL) -> bool:
    """Whether `value` holds a character of these Unicode categories (control ones by default).
    isprintable() first: one C call that is true for nearly every value, and no control
    character or lone surrogate is printable."""
    return not value.isprintable() and any(unicodedata.category(ch) in categories for ch in value)
