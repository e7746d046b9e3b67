"""Admin HTTP API under /admin: workspaces, keys and quotas. Needs MEMORY_ADMIN_TOKEN."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from ..services.container import Services
from ..services.errors import BadRequest
from ..services.workspaces import WorkspaceService
from .auth import admin_guard
from .schemas import (
    CreateKey,
    CreateWorkspace,
    Done,
    KeyInfo,
    KeyList,
    NewKey,
    SetQuota,
    WorkspaceCreated,
    WorkspaceInfo,
    WorkspaceList,
    WorkspaceOne,
    count,
)

Body = TypeVar("Body", bound=msgspec.Struct)


async def strictly(request: Request, data: Body) -> Body:
    """`data` as the JSON body says it, with no conversion: Litestar converts a body leniently
    (`{"quotaBytes": "100"}`, `100.0` or `1e3` would be the quota 100 or 1000), and a quota or
    a label that is not what the client meant is worse than a 400 naming the field."""
    try:
        return msgspec.convert(await request.json(), type(data), strict=True)
    except msgspec.ValidationError as exc:
        # msgspec says "Expected `int`, got `str` - at `$.quotaBytes`": Litestar's words are
        # "invalid request: quotaBytes: Expected ...", as for every other wrong type.
        what, _, where = str(exc).partition(" - at `$.")
        field = where.rstrip("`")
        detail = f"{field}: {what}" if field else what
        raise BadRequest(f"invalid request: {detail}", code="invalid_request") from None


def provide_workspaces(state: State) -> WorkspaceService:
    services: Services = state.services
    return services.workspaces


class AdminController(Controller):
    path = "/admin"
    tags = ["admin"]
    # A guard, not a dependency: guards run before the body is parsed, so a caller without the
    # admin token learns nothing from validation errors (and gets 401/404 whatever it sends).
    guards = [admin_guard]
    dependencies = {"workspaces": Provide(provide_workspaces, sync_to_thread=False)}
    security = [{"AdminToken": []}]

    @post(
        "/workspaces",
        operation_id="adminCreateWorkspace",
        status_code=201,
        summary="Create a workspace and its first API key (shown once)",
    )
    async def create_workspace(
        self,
        request: Request,
        workspaces: NamedDependency[WorkspaceService],
        data: JSONBody[CreateWorkspace],
    ) -> WorkspaceCreated:
        data = await strictly(request, data)
        info, key = await workspaces.create_workspace(data.name, data.quota_bytes)
        keys = await workspaces.list_keys(data.name)
        return WorkspaceCreated(
            success=True,
            message=f"Workspace {data.name!r} created; its key is shown only this once",
            workspace=WorkspaceInfo(**info),
            key=key.secret,
            key_info=KeyInfo(**keys[0]),
        )

    @get("/workspaces", operation_id="adminListWorkspaces", summary="List workspaces")
    async def list_workspaces(self, workspaces: NamedDependency[WorkspaceService]) -> WorkspaceList:
        rows = await workspaces.list_workspaces()
        return WorkspaceList(
            success=True,
            message=count(len(rows), "workspace"),
            workspaces=[WorkspaceInfo(**r) for r in rows],
        )

    @get("/workspaces/{name:str}", operation_id="adminGetWorkspace", summary="One workspace")
    async def get_workspace(
        self,
        workspaces: NamedDependency[WorkspaceService],
        name: FromPath[str],
    ) -> WorkspaceOne:
        return WorkspaceOne(
            success=True,
            message=f"Workspace {name!r}",
            workspace=WorkspaceInfo(**await workspaces.describe(name)),
        )

    @delete(
        "/workspaces/{name:str}",
        operation_id="adminDeleteWorkspace",
        status_code=200,
        summary="Delete a workspace with all its data and keys",
    )
    async def delete_workspace(
        self,
        workspaces: NamedDependency[WorkspaceService],
        name: FromPath[str],
    ) -> Done:
        await workspaces.delete_workspace(name)
        return Done(success=True, message=f"workspace {name!r} deleted")

    @put(
        "/workspaces/{name:str}/quota",
        operation_id="adminSetQuota",
        summary="Set a workspace's quota in bytes",
    )
    async def set_quota(
        self,
        request: Request,
        workspaces: NamedDependency[WorkspaceService],
        name: FromPath[str],
        data: JSONBody[SetQuota],
    ) -> WorkspaceOne:
        data = await strictly(request, data)
        info = await workspaces.set_quota(name, data.quota_bytes)
        return WorkspaceOne(
            success=True,
            message=f"Quota of {name!r} set to {data.quota_bytes} bytes",
            workspace=WorkspaceInfo(**info),
        )

    @get(
        "/workspaces/{name:str}/keys",
        operation_id="adminListKeys",
        summary="List a workspace's keys (never their secrets)",
    )
    async def list_keys(
        self,
        workspaces: NamedDependency[WorkspaceService],
        name: FromPath[str],
    ) -> KeyList:
        rows = await workspaces.list_keys(name)
        return KeyList(
            success=True, message=count(len(rows), "key"), keys=[KeyInfo(**r) for r in rows]
        )

    @post(
        "/workspaces/{name:str}/keys",
        operation_id="adminCreateKey",
        status_code=201,
        summary="Create an API key (the secret is shown once)",
    )
    async def create_key(
        self,
        workspaces: NamedDependency[WorkspaceService],
        name: FromPath[str],
        request: Request,
        data: JSONBody[CreateKey | None] = None,
    ) -> NewKey:
        if data is not None:
            data = await strictly(request, data)
        label = data.label if data else ""
        key = await workspaces.create_key(name, label)
        info = next(k for k in await workspaces.list_keys(name) if k["id"] == key.id)
        return NewKey(
            success=True,
            message="Key created; it is shown only this once",
            key=key.secret,
            key_info=KeyInfo(**info),
        )

    @post(
        "/sweep",
        operation_id="adminSweep",
        status_code=200,
        summary="Delete expired KV entries now and free their bytes (also runs periodically)",
    )
    async def sweep(self, state: State) -> Done:
        freed = await state.services.kv.sweep()
        return Done(success=True, message=f"freed {freed} bytes")

    @delete(
        "/keys/{key_id:int}",
        operation_id="adminRevokeKey",
        status_code=200,
        summary="Revoke an API key",
    )
    async def revoke_key(
        self,
        workspaces: NamedDependency[WorkspaceService],
        key_id: FromPath[int],
    ) -> Done:
        await workspaces.revoke_key(key_id)
        return Done(success=True, message=f"key {key_id} revoked")
