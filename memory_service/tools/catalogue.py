"""The tool catalogue: every tool by name (its manifest from YAML, its runner from Python), and
the manifests as JSON data or Dify-style YAML."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from jsonschema.exceptions import SchemaError

from ..services.errors import NotFound
from . import memory, storage
from .loader import MANIFEST_DIR, ManifestError, load_manifests
from .manifest import ToolManifest, input_schema, manifest_dict
from .runtime import Runner, Tool

# The code behind each tool, in catalogue order.
RUNNERS: dict[str, Runner] = {**memory.RUNNERS, **storage.RUNNERS}


def build(directory: Path, runners: dict[str, Runner] = RUNNERS) -> dict[str, Tool]:
    """Manifests and runners paired one to one; any mismatch or bad schema is a ManifestError."""
    found = load_manifests(directory)
    missing = sorted(set(runners) - set(found))
    if missing:
        raise ManifestError(f"{directory}: no manifest for tool(s) {', '.join(missing)}")
    extra = sorted(set(found) - set(runners))
    if extra:
        raise ManifestError(
            f"{directory}: manifest(s) for unknown tool(s) {', '.join(extra)} (no code runs them)"
        )
    tools = {}
    for name, runner in runners.items():
        try:
            tools[name] = Tool(found[name], runner.run, runner.prepare)
        except (ValueError, SchemaError) as exc:  # not a schema, or not one the checker takes
            why = exc.message if isinstance(exc, SchemaError) else exc
            raise ManifestError(f"{directory / (name + '.yaml')}: output_schema: {why}") from None
        try:  # MCP offers the parameters as a JSON Schema: every one must have a JSON form
            input_schema(found[name])
        except ValueError as exc:
            raise ManifestError(f"{directory / (name + '.yaml')}: parameters: {exc}") from None
    return tools


@functools.cache
def tools() -> dict[str, Tool]:
    """The package's catalogue, read once per process (create_app reads it at start-up)."""
    return build(MANIFEST_DIR)


def get_tool(name: str) -> Tool:
    tool = tools().get(name)
    if tool is None:
        raise NotFound(f"no tool named {name!r}; GET /api/tools lists them", code="tool_not_found")
    return tool


def manifests() -> list[ToolManifest]:
    return [t.manifest for t in tools().values()]


def to_yaml(items: list[ToolManifest] | ToolManifest) -> str:
    """One YAML document: a tool's manifest as a plugin's `tools/<name>.yaml` holds it, or a
    list of them."""
    data = [manifest_dict(t) for t in items] if isinstance(items, list) else manifest_dict(items)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
