"""Wire shapes (msgspec Structs): what the API accepts and answers, as openapi.yaml shows.

Every JSON answer is one of two shapes, told apart by `success` (SPEC 7): a success carries
`success: true` and a `message`; a failure (`Failure`) carries `success: false`, `error`,
`message` and `code`. `success` is a literal, so the document gives it as `const`, and typed
clients narrow an answer on it. Fields the server always sends are required (`null` when they do
not apply), so generated clients do not type them as possibly absent.
"""

from __future__ import annotations

from typing import Literal

import msgspec

# A KV list item's shape is shared with the tools: built in services/shapes.py.
from ..services.shapes import KvItem


class Failure(msgspec.Struct):
    success: Literal[False]
    # What was wrong.
    error: str
    # The same for a person (the Memory block's contract has every answer carry `message`).
    message: str
    # Machine-readable: e.g. `invalid_key`, `quota_exceeded`, `precondition_failed`.
    code: str


class KvWritten(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    key: str
    version: int
    etag: str
    size: int
    created: bool
    expires_at: str | None


class KvDeleted(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    key: str
    deleted: bool
    freed_bytes: int


class KvList(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    items: list[KvItem]
    # The next page's cursor; null on the last page.
    next_cursor: str | None


class Usage(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    workspace: str
    used: int
    quota: int


class WorkspaceInfo(msgspec.Struct, rename="camel"):
    name: str
    quota_bytes: int
    used_bytes: int
    active_keys: int
    created_at: str


class KeyInfo(msgspec.Struct, rename="camel"):
    id: int
    workspace: str
    prefix: str
    label: str
    created_at: str
    revoked_at: str | None


class CreateWorkspace(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    name: str
    # Bytes; absent for the server's default quota.
    quota_bytes: int | None = None


class SetQuota(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    quota_bytes: int


class CreateKey(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    label: str = ""


class NewKey(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    key: str
    key_info: KeyInfo


class WorkspaceCreated(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    workspace: WorkspaceInfo
    key: str
    key_info: KeyInfo


class WorkspaceOne(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    workspace: WorkspaceInfo


class WorkspaceList(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    workspaces: list[WorkspaceInfo]


class KeyList(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    keys: list[KeyInfo]


class Done(msgspec.Struct):
    success: Literal[True]
    message: str


class Health(msgspec.Struct):
    success: Literal[True]
    message: str
    status: str


def count(n: int, one: str, many: str | None = None) -> str:
    """`1 key`, `2 keys`: the numbers in success messages."""
    return f"{n} {one if n == 1 else (many or one + 's')}"
