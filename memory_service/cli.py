"""The `memory-service` command: serve, migrate, and workspace/key administration."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from .logs import configure_logging
from .services.errors import ServiceError
from .services.workspaces import WorkspaceService
from .settings import Settings
from .storage.database import Database
from .storage.migrations import upgrade

T = TypeVar("T")

url_option = click.option(
    "--database-url",
    envvar="MEMORY_DATABASE_URL",
    default=None,
    help="SQLAlchemy URL (default: SQLite file under $XDG_DATA_HOME/memory-service). "
    "Env: MEMORY_DATABASE_URL.",
)


def _settings(database_url: str | None, **overrides: Any) -> Settings:
    if database_url:
        overrides["database_url"] = database_url
    try:
        return Settings.from_env(**overrides)
    except ValueError as exc:  # a setting that cannot work: say which, and do not start
        raise click.ClickException(str(exc)) from exc


def _with_workspaces(settings: Settings, fn: Callable[[WorkspaceService], Awaitable[T]]) -> T:
    async def run() -> T:
        await upgrade(settings.database_url)
        db = Database(settings)
        try:
            return await fn(WorkspaceService(db, settings))
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc


def _print(obj: object, as_json: bool, text: str) -> None:
    click.echo(json.dumps(obj, indent=2) if as_json else text)


@click.group()
@click.version_option(package_name="memory-service")
def main() -> None:
    """memory-service: conversation memory and a per-workspace key-value store over HTTP."""


@main.command()
@click.option("--host", envvar="MEMORY_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="MEMORY_PORT", default=8080, show_default=True, type=int)
@url_option
@click.option(
    "--no-default-workspace",
    is_flag=True,
    help="Do not create the `default` workspace on an empty database.",
)
def serve(host: str, port: int, database_url: str | None, no_default_workspace: bool) -> None:
    """Apply migrations, then serve HTTP (one process; run several behind a load balancer)."""
    import uvicorn

    from .app import create_app
    from .http.protocol import bounded_protocol

    settings = _settings(database_url, host=host, port=port)
    _check_tool_manifests()
    configure_logging(settings.log_level)  # JSON lines on stderr; keys go to stdout only
    log = logging.getLogger("memory_service")
    log.info("applying migrations to %s", _redact(settings.database_url))
    asyncio.run(upgrade(settings.database_url))
    log.info("database schema is at the latest migration")
    created = None
    if not no_default_workspace:
        created = _with_workspaces(settings, lambda ws: ws.ensure_default())
    url = f"http://{host}:{port}"
    if created:
        click.echo(
            f"\nCreated workspace 'default'. Its API key, shown only this once:\n\n"
            f"    {created.secret}\n\n"
            f"Try it:\n    curl -X PUT -H 'Authorization: Bearer {created.secret}' "
            f"--data-binary 'hello' {url}/api/kv/greeting\n"
            f"    curl -H 'Authorization: Bearer {created.secret}' {url}/api/kv/greeting\n"
        )
    click.echo(
        f"memory-service listening on {url}  (OpenAPI: {url}/schema/openapi.yaml)", err=False
    )
    sys.stdout.flush()
    app = create_app(settings)
    # Everything built so far (modules, the app, its routes, schemas and tool manifests) lives as
    # long as the process. Left in the collector's oldest generation, each full collection walked
    # all of it: a pause of about 100 ms every few seconds on a busy server, which was the write
    # p99 (bench/run.py kv: kv-set p99 109 ms with the collector as it was, 11 ms frozen, against
    # the baseline's 10 ms). Frozen objects are still freed by reference counting.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=bounded_protocol(
            settings.max_header_bytes,
            settings.header_timeout_seconds,
            settings.body_timeout_seconds,
        ),
        access_log=False,  # the app writes its own access lines (with request ids)
        log_config=None,  # keep the JSON logging set up above
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=30,
    )


def _check_tool_manifests() -> None:
    """A broken tool manifest stops `serve` before anything else, with the file and field."""
    from .tools.catalogue import tools
    from .tools.loader import ManifestError

    try:
        tools()
    except ManifestError as exc:
        raise click.ClickException(f"tool manifests: {exc}") from exc


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.command()
@url_option
def migrate(database_url: str | None) -> None:
    """Upgrade the database schema to the latest migration."""
    settings = _settings(database_url)
    asyncio.run(upgrade(settings.database_url))
    click.echo(f"database at {_redact(settings.database_url)} is at the latest migration")


@main.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("openapi.yaml"),
    show_default=True,
)
def openapi(output: Path) -> None:
    """Write the OpenAPI document the app serves (YAML)."""
    from .openapi import render_openapi

    output.write_text(render_openapi())
    click.echo(f"wrote {output}")


@main.group()
def workspace() -> None:
    """Create, list and delete workspaces."""


@workspace.command("create")
@click.argument("name")
@click.option("--quota", type=int, default=None, help="Quota in bytes (default: 100 MiB).")
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workspace_create(name: str, quota: int | None, database_url: str | None, as_json: bool) -> None:
    """Create a workspace and print its first API key (shown once)."""
    info, key = _with_workspaces(
        _settings(database_url), lambda ws: ws.create_workspace(name, quota)
    )
    _print(
        {"workspace": info, "key": key.secret, "keyId": key.id},
        as_json,
        f"created workspace {name!r}; API key (shown once): {key.secret}",
    )


@workspace.command("list")
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workspace_list(database_url: str | None, as_json: bool) -> None:
    """List workspaces with their usage."""
    rows = _with_workspaces(_settings(database_url), lambda ws: ws.list_workspaces())
    text = (
        "\n".join(
            f"{r['name']:<24} used {r['used_bytes']:>12} of {r['quota_bytes']:>12} bytes, "
            f"{r['active_keys']} active key(s)"
            for r in rows
        )
        or "no workspaces"
    )
    _print(rows, as_json, text)


@workspace.command("delete")
@click.argument("name")
@url_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def workspace_delete(name: str, database_url: str | None, yes: bool) -> None:
    """Delete a workspace with all its data and keys."""
    if not yes:
        click.confirm(f"Delete workspace {name!r} and all of its data?", abort=True)
    _with_workspaces(_settings(database_url), lambda ws: ws.delete_workspace(name))
    click.echo(f"deleted workspace {name!r}")


@workspace.command("quota")
@click.argument("name")
@click.argument("quota_bytes", type=int)
@url_option
def workspace_quota(name: str, quota_bytes: int, database_url: str | None) -> None:
    """Set a workspace's quota in bytes."""
    _with_workspaces(_settings(database_url), lambda ws: ws.set_quota(name, quota_bytes))
    click.echo(f"quota of {name!r} set to {quota_bytes} bytes")


@main.group()
def key() -> None:
    """Create, list and revoke API keys."""


@key.command("create")
@click.argument("workspace_name")
@click.option("--label", default="", help="A note to recognise the key by.")
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def key_create(workspace_name: str, label: str, database_url: str | None, as_json: bool) -> None:
    """Create an API key for a workspace (shown once)."""
    created = _with_workspaces(
        _settings(database_url), lambda ws: ws.create_key(workspace_name, label)
    )
    _print(
        {"key": created.secret, "keyId": created.id, "workspace": workspace_name},
        as_json,
        f"API key {created.id} for {workspace_name!r} (shown once): {created.secret}",
    )


@key.command("list")
@click.argument("workspace_name")
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def key_list(workspace_name: str, database_url: str | None, as_json: bool) -> None:
    """List a workspace's keys (never their secrets)."""
    rows = _with_workspaces(_settings(database_url), lambda ws: ws.list_keys(workspace_name))
    text = "\n".join(
        f"{r['id']:>5} {r['prefix']}…  {r['label'] or '-':<20} "
        f"{'revoked ' + r['revoked_at'] if r['revoked_at'] else 'active'}"
        for r in rows
    )
    _print(rows, as_json, text or "no keys")


@key.command("revoke")
@click.argument("key_id", type=int)
@url_option
def key_revoke(key_id: int, database_url: str | None) -> None:
    """Revoke an API key by its id (see `key list`)."""
    _with_workspaces(_settings(database_url), lambda ws: ws.revoke_key(key_id))
    click.echo(f"revoked key {key_id}")


@main.group()
def backup() -> None:
    """Export workspaces to a JSON Lines file, and import such a file (SQLite or PostgreSQL)."""


@contextlib.contextmanager
def _progressbar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    with click.progressbar(length=max(total, 1), label=label, file=sys.stderr) as bar:
        yield bar.update


def _backup_run(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    from .services.backup import BackupError

    try:
        return asyncio.run(fn())
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # e.g. the export's directory does not exist
        raise click.ClickException(f"{exc.strerror or exc}: {exc.filename or ''}") from exc


@backup.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--workspace", default=None, help="Export only this workspace.")
@click.option(
    "--without-keys",
    is_flag=True,
    help="Leave API key hashes out (keys must then be created anew after a restore).",
)
@url_option
def backup_export(
    file: Path, workspace: str | None, without_keys: bool, database_url: str | None
) -> None:
    """Write a consistent snapshot of the database (or of one workspace) to FILE.

    The file holds the hashes of API keys (never the keys), so keys keep working after a
    restore; keep it as private as the database itself."""
    from .services.backup import export_backup

    settings = _settings(database_url)
    counts = _backup_run(
        lambda: export_backup(
            settings.database_url,
            file,
            workspace=workspace,
            with_keys=not without_keys,
            progress=_progressbar,
        )
    )
    click.echo(f"exported to {file}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@backup.command("import")
@click.argument(
    "file", type=click.Path(dir_okay=False, exists=True, allow_dash=True, path_type=Path)
)
@url_option
def backup_import(file: Path, database_url: str | None) -> None:
    """Import FILE (`-` reads standard input) into the database: all of it, in one
    transaction, or nothing.

    The file is read once; every record is held to the API's rules (ids, keys, roles, sizes,
    media types, names, versions, usage recounted from the bytes) and the checksum is checked
    over the bytes imported. A workspace that already exists in the database is refused, never
    merged. A refused file names its first bad record (line, field, rule) and changes nothing."""
    from .services.backup import Plan, import_backup

    settings = _settings(database_url)
    source = sys.stdin.buffer if str(file) == "-" else file

    async def run() -> Plan:
        await upgrade(settings.database_url)
        return await import_backup(
            settings.database_url, source, settings=settings, progress=_progressbar
        )

    plan = _backup_run(run)
    counts = ", ".join(f"{v} {k}" for k, v in plan.counts.items())
    name = "standard input" if source is not file else str(file)
    click.echo(f"imported {name} into {_redact(settings.database_url)}: {counts or 'nothing'}")
    if not plan.header.get("apiKeys", True):
        click.echo(
            "the file holds no API keys: create them with `memory-service key create WORKSPACE`"
        )
