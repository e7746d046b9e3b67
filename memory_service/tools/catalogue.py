"""The tool catalogue: every tool by name, and its manifest as JSON data or Dify-style YAML."""

from __future__ import annotations

import yaml

from ..services.errors import NotFound
from . import memory, storage
from .manifest import ToolManifest, manifest_dict
from .runtime import Tool

TOOLS: dict[str, Tool] = {t.name: t for t in [*memory.TOOLS, *storage.TOOLS]}


def get_tool(name: str) -> Tool:
    tool = TOOLS.get(name)
    if tool is None:
        raise NotFound(f"no tool named {name!r}; GET /api/tools lists them", code="tool_not_found")
    return tool


def manifests() -> list[ToolManifest]:
    return [t.manifest for t in TOOLS.values()]


def to_yaml(items: list[ToolManifest] | ToolManifest) -> str:
    """One YAML document: a tool's manifest as a plugin's `tools/<name>.yaml` holds it, or a
    list of them."""
    data = [manifest_dict(t) for t in items] if isinstance(items, list) else manifest_dict(items)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
