"""Opaque cursors: authenticated and encrypted, so that they reveal nothing and cannot be forged.

A cursor names a position in a listing (a memory id, a key, a block id). Sent in the clear it
would tell a workspace how many memories the whole server holds, confirm a guessed conversation
id offline, or show the last key listed; a forged one would reach rows of a position the server
never handed out. So every cursor is sealed with AES-GCM (the `cryptography` package) under a key
derived from a server secret that all replicas share: the `cursor` row that migration 0003 puts
in the database, or MEMORY_CURSOR_SECRET when set. The associated data binds a cursor to its
listing kind and to the workspace it was issued to; a cursor older than the cursor lifetime is
refused. Tampered, foreign, expired or malformed cursors are all the same 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..settings import Settings
from ..storage import secrets as secrets_sql
from ..storage.database import Database
from .errors import BadRequest

NONCE_BYTES = 12
# Plaintexts are padded to a multiple of this: a cursor's length must not tell how large the
# (server-wide) memory id inside is, nor how long a key is, within a bucket.
PAD_TO = 64
MAX_CURSOR_CHARS = 2048  # far above any cursor issued (a block id of 256 characters included)
_KDF_LABEL = b"memory-service cursor key v1\x00"


def invalid_cursor(
    reason: str = "is not valid: pass back a cursor exactly as this service answered it",
) -> BadRequest:
    return BadRequest(f"cursor {reason}", code="invalid_cursor")


class Cursors:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._aead: AESGCM | None = None

    async def load(self) -> None:
        """Read the shared secret once (at start-up; again only if that has not happened)."""
        if self._aead is not None:
            return
        secret = self.settings.cursor_secret
        raw = (
            secret.encode()
            if secret
            else await self.db.read(secrets_sql.secret, "cursor", inline=True)
        )
        if raw is None:
            raise RuntimeError("the database has no cursor secret: run `memory-service migrate`")
        self._aead = AESGCM(hashlib.sha256(_KDF_LABEL + raw).digest())

    def _box(self) -> AESGCM:
        if self._aead is None:
            raise RuntimeError("cursor secret not loaded (Cursors.load() runs at start-up)")
        return self._aead

    @staticmethod
    def _aad(kind: str, workspace_id: int) -> bytes:
        return f"{kind}\x00{workspace_id}".encode()

    def seal(self, kind: str, workspace_id: int, payload: Any) -> str:
        nonce = os.urandom(NONCE_BYTES)
        issued = int(time.time())
        bare = len(msgspec.msgpack.encode([issued, payload, b""]))
        # (A bin of under 256 bytes has a 2-byte header whatever its length: the padding adds
        # exactly its own size.)
        plain = msgspec.msgpack.encode([issued, payload, bytes(-bare % PAD_TO)])
        sealed = self._box().encrypt(nonce, plain, self._aad(kind, workspace_id))
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, cursor: str, kind: str, workspace_id: int) -> Any:
        """The payload sealed into `cursor` for this kind of listing and this workspace."""
        if len(cursor) > MAX_CURSOR_CHARS:
            raise invalid_cursor("is too long to be one this service answered")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError) as exc:
            raise invalid_cursor() from exc
        if len(raw) < NONCE_BYTES + 16:
            raise invalid_cursor()
        try:
            plain = self._box().decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad(kind, workspace_id)
            )
            issued, payload, _padding = msgspec.msgpack.decode(plain)
        except (InvalidTag, msgspec.DecodeError, ValueError, TypeError) as exc:
            # Not sealed by this service, for this listing and this workspace.
            raise invalid_cursor() from exc
        if time.time() - issued > self.settings.cursor_ttl_seconds:
            raise invalid_cursor("has expired: list again from the start")
        return payload
