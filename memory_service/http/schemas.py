"""Wire shapes (msgspec Structs): what the API accepts and answers, as openapi.yaml shows."""

from __future__ import annotations

import msgspec


class Failure(msgspec.Struct):
    success: bool
    error: str
    code: str


class KvWritten(msgspec.Struct, rename="camel"):
    success: bool
    key: str
    version: int
    etag: str
    size: int
    created: bool
    expires_at: str | None = None


class KvDeleted(msgspec.Struct, rename="camel"):
    success: bool
    key: str
    deleted: bool
    freed_bytes: int


class KvItem(msgspec.Struct, rename="camel"):
    key: str
    size: int
    content_type: str
    version: int
    etag: str
    updated_at: str
    expires_at: str | None = None


class KvList(msgspec.Struct, rename="camel"):
    success: bool
    items: list[KvItem]
    next_cursor: str | None = None


class Usage(msgspec.Struct, rename="camel"):
    success: bool
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
    revoked_at: str | None = None


class CreateWorkspace(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    name: str
    quota_bytes: int | None = None


class SetQuota(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    quota_bytes: int


class CreateKey(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    label: str = ""


class NewKey(msgspec.Struct, rename="camel"):
    success: bool
    key: str
    key_info: KeyInfo


class WorkspaceCreated(msgspec.Struct, rename="camel"):
    success: bool
    workspace: WorkspaceInfo
    key: str
    key_info: KeyInfo


class WorkspaceOne(msgspec.Struct, rename="camel"):
    success: bool
    workspace: WorkspaceInfo


class WorkspaceList(msgspec.Struct, rename="camel"):
    success: bool
    workspaces: list[WorkspaceInfo]


class KeyList(msgspec.Struct, rename="camel"):
    success: bool
    keys: list[KeyInfo]


class Done(msgspec.Struct):
    success: bool
    message: str


class Health(msgspec.Struct):
    success: bool
    status: str
