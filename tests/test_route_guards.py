"""Every route that takes a workspace key refuses a request without a good one, the KV GET fast
path included; and a guard added to the KV controller or to the app reaches every KV route,
the fast path too.

`GET /api/kv/{key}` is answered by a fast path outside Litestar's router (http/kv_get.py) while
the kvGet route has nothing that the fast path would skip. Anything added to the route, its
controller or the app that it would skip (a guard, middleware, a hook, response headers, an
exception handler, a dependency) turns it off, so the addition reaches kvGet like every route:
`test_an_addition_the_fast_path_would_skip_turns_it_off` adds each and sees it apply. And
`test_the_default_app_serves_kv_get_by_the_fast_path` fails when such an addition lands in the
code, so that whoever makes it decides whether the fast path should learn it (its cost is in
bench/README.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from litestar import Litestar, Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import ResponseHeader
from litestar.di import Provide
from litestar.exceptions import PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.types import ASGIApp, Receive, Scope, Send

import memory_service.app as app_module
from memory_service.http.fast_path import blockers, fast_paths_of, route_handler
from memory_service.http.kv import KvController
from memory_service.http.memory import MemoryController
from memory_service.http.stats import StatsController
from memory_service.http.tools import ToolsController
from memory_service.services.errors import NotFound
from tests.conftest import Api, make_api

DENIED = "refused by the test's guard"
KV_OPERATIONS = {"kvSet", "kvGet", "kvExists", "kvDelete", "kvList", "usage"}
# Path parameters filled in for a request that must reach (at least) the route's guards.
SAMPLE = {"key": "k", "block_id": "b", "blockId": "b", "name": "memory_get", "key:path": "k"}


def routes(app: Litestar, owners: tuple[type, ...] | None = None) -> list[tuple[str, str, str]]:
    """(method, path with parameters filled in, operation id) of every HTTP route handler of the
    app (only those of the given controllers, if any)."""
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            # A controller is registered as a router: its handlers are its bound methods.
            owner = getattr(handler.fn, "__self__", None)
            if owners is not None and not isinstance(owner, owners):
                continue
            path = route.path_format
            for name, value in SAMPLE.items():
                path = path.replace("{" + name + "}", value)
            for method in sorted(handler.http_methods):
                if method == "OPTIONS":
                    continue
                found.append((method, path, handler.operation_id or handler.handler_name))
    return found


async def call(api: Api, method: str, path: str, headers: dict[str, str]):  # noqa: ANN201
    body = b"{}" if method in ("POST", "PUT") else None
    return await api.client.request(method, path, headers=headers, content=body)


def workspace_routes(app: Litestar) -> list[tuple[str, str, str]]:
    owners = (KvController, MemoryController, StatsController, ToolsController)
    return [r for r in routes(app, owners) if not r[1].startswith("/api/tools/manifest")]


async def test_every_workspace_route_refuses_a_missing_or_bad_key(database_url: str) -> None:
    # Failed credentials from one address are bounded (429 past a burst): not what this tests.
    api, app = await make_api(database_url, auth_failure_burst=10_000)
    async with api.client:
        listed = workspace_routes(app)
        assert ("GET", "/api/kv/k", "kvGet") in listed  # the fast path is among them
        good = await api.workspace("auth-every-route")
        revoked = await api.workspace("auth-revoked")
        keys = await api.client.get("/admin/workspaces/auth-revoked/keys", headers=api.admin)
        for key in keys.json()["keys"]:
            r = await api.client.delete(f"/admin/keys/{key['id']}", headers=api.admin)
            assert r.status_code == 200, r.text
        gone = await api.workspace("auth-gone")
        r = await api.client.delete("/admin/workspaces/auth-gone", headers=api.admin)
        assert r.status_code == 200, r.text
        await api.client.put("/api/kv/k", content=b"kept", headers=good)
        refusals = {
            "no key": {},
            "wrong key": {"Authorization": "Bearer ms_not-a-key"},
            "wrong X-API-Key": {"X-API-Key": "ms_not-a-key"},
            "revoked key": revoked,
            "deleted workspace": gone,
        }
        for method, path, operation in listed:
            for why, headers in refusals.items():
                r = await call(api, method, path, headers)
                assert r.status_code == 401, (operation, why, r.status_code, r.text)
                if method != "HEAD":
                    body = r.json()
                    assert (body["success"], body["code"]) == (False, "unauthorized"), body
        # Nothing was changed by the refused writes.
        r = await api.client.get("/api/kv/k", headers=good)
        assert (r.status_code, r.content) == (200, b"kept")


async def deny(_connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    raise PermissionDeniedException(DENIED)


async def assert_denied(api: Api, method: str, path: str, headers: dict[str, str]) -> None:
    r = await call(api, method, path, headers)
    assert r.status_code == 403, (method, path, r.status_code, r.text)
    if method != "HEAD":
        assert r.json() == {
            "success": False,
            "error": DENIED,
            "message": DENIED,
            "code": "forbidden",
        }


async def with_stored_value(database_url: str) -> dict[str, str]:
    """A workspace holding k = v, made before any guard is set; its key's headers."""
    made, _ = await make_api(database_url)
    async with made.client:
        key = await made.workspace("guarded")
        assert (await made.client.put("/api/kv/k", content=b"v", headers=key)).status_code == 201
    return key


async def assert_unchanged(database_url: str, key: dict[str, str]) -> None:
    """The refused writes changed nothing (read with no guard set)."""
    api, _ = await make_api(database_url)
    async with api.client:
        r = await api.client.get("/api/kv/k", headers=key)
        assert (r.status_code, r.content) == (200, b"v")


async def test_a_guard_on_the_kv_controller_reaches_every_kv_route(
    sqlite_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await with_stored_value(sqlite_database_url)
    monkeypatch.setattr(KvController, "guards", [deny])
    api, app = await make_api(sqlite_database_url)
    async with api.client:
        kv_routes = routes(app, (KvController,))
        assert {op for _, _, op in kv_routes} == KV_OPERATIONS
        for method, path, _ in kv_routes:
            await assert_denied(api, method, path, key)
        # The other controllers are not guarded by it.
        r = await api.client.get("/api/memory?conversationId=c", headers=key)
        assert r.status_code == 200, r.text
    monkeypatch.undo()
    await assert_unchanged(sqlite_database_url, key)


async def test_a_guard_on_the_memory_controller_reaches_its_fast_routes(
    sqlite_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await with_stored_value(sqlite_database_url)
    monkeypatch.setattr(MemoryController, "guards", [deny])
    api, app = await make_api(sqlite_database_url)
    assert sorted(p.operation_id for p in fast_paths_of(app)) == ["kvBatchGet", "kvGet", "kvSet"]
    async with api.client:
        r = await api.client.post(
            "/api/memory", json={"conversationId": "c", "role": "user", "content": "x"}, headers=key
        )
        assert (r.status_code, r.json()["error"]) == (403, DENIED)
        r = await api.client.get("/api/memory?conversationId=c&lastN=20", headers=key)
        assert (r.status_code, r.json()["error"]) == (403, DENIED)
    monkeypatch.undo()
    api, _ = await make_api(sqlite_database_url)
    async with api.client:  # the refused add stored nothing
        r = await api.client.get("/api/memory?conversationId=c", headers=key)
        assert (r.status_code, r.json()["memories"]) == (200, [])


async def test_an_app_guard_reaches_the_kv_fast_path(
    sqlite_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await with_stored_value(sqlite_database_url)
    monkeypatch.setattr(app_module, "Litestar", functools.partial(Litestar, guards=[deny]))
    api, app = await make_api(sqlite_database_url)
    async with api.client:
        for method, path, _ in workspace_routes(app):
            await assert_denied(api, method, path, key)
    monkeypatch.undo()
    await assert_unchanged(sqlite_database_url, key)


async def test_the_default_app_serves_kv_get_by_the_fast_path(sqlite_database_url: str) -> None:
    _, app = await make_api(sqlite_database_url)
    for operation in FAST:
        assert blockers(app, route_handler(app, operation)) == []
    assert sorted(p.operation_id for p in fast_paths_of(app)) == sorted(FAST)


FAST = ("kvGet", "kvSet", "memoryAdd", "memoryGet", "kvBatchGet")


RAN: list[str] = []


def noted(name: str) -> Callable[..., Any]:
    async def note(*_args: object) -> None:
        RAN.append(name)

    return note


async def note_after_request(response: Any) -> Any:
    RAN.append("after_request")
    return response


def note_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        RAN.append("middleware")
        await app(scope, receive, send)

    return middleware


def teapot(_request: Request, _exc: Exception) -> Response:
    RAN.append("exception_handlers")
    return Response({"teapot": True}, status_code=418)


async def provide_nothing() -> None:
    RAN.append("dependencies")


# Each addition: where it goes, its value; what GETs of a stored and a missing key then show.
ADDITIONS = {
    "controller guards": ("controller", "guards", [noted("guards")]),
    "app guards": ("app", "guards", [noted("guards")]),
    "controller middleware": ("controller", "middleware", [note_middleware]),
    "app middleware": ("app", "middleware", [note_middleware]),
    "before_request": ("controller", "before_request", noted("before_request")),
    "after_request": ("controller", "after_request", note_after_request),
    "after_response": ("controller", "after_response", noted("after_response")),
    "response_headers": (
        "controller",
        "response_headers",
        [ResponseHeader(name="x-added", value="1")],
    ),
    "exception_handlers": ("controller", "exception_handlers", {NotFound: teapot}),
    "after_exception": ("app", "after_exception", [noted("after_exception")]),
    "dependencies": (
        "controller",
        "dependencies",
        {"principal": KvController.dependencies["principal"], "nothing": Provide(provide_nothing)},
    ),
}


@pytest.mark.parametrize("addition", ADDITIONS)
async def test_an_addition_the_fast_path_would_skip_turns_it_off(
    sqlite_database_url: str, monkeypatch: pytest.MonkeyPatch, addition: str
) -> None:
    where, name, value = ADDITIONS[addition]
    if where == "controller":
        monkeypatch.setattr(KvController, name, value)
    else:
        monkeypatch.setattr(app_module, "Litestar", functools.partial(Litestar, **{name: value}))
    RAN.clear()
    api, app = await make_api(sqlite_database_url)
    assert "kvGet" not in [p.operation_id for p in fast_paths_of(app)]
    assert name in blockers(app, route_handler(app, "kvGet"))
    async with api.client:
        key = await api.workspace("added")
        assert (await api.client.put("/api/kv/k", content=b"v", headers=key)).status_code == 201
        RAN.clear()
        found = await api.client.get("/api/kv/k", headers=key)  # after_request: answers only
        r = await api.client.get("/api/kv/missing", headers=key)  # exceptions: refusals only
    assert found.status_code == 200
    if name in ("response_headers", "dependencies"):
        # Litestar adds neither to get_value's answer (a dependency runs only for a handler that
        # asks for it; response headers are not added to a raw ASGI answer), so the long way
        # does not show them either. The fast path still steps aside: that is not its decision.
        assert "x-added" not in found.headers and "dependencies" not in RAN
    elif name == "exception_handlers":
        assert (r.status_code, r.json()) == (418, {"teapot": True})
    else:
        assert name in RAN, (r.status_code, RAN)
