"""Reads and checks the tool manifests: `tools/manifests/<tool>.yaml`, one file per tool, in a
Dify plugin's tool YAML shape, plus `_common.yaml` with the pieces several tools share.

A manifest is the one source of a tool's definition: `/api/tools`, MCP's tool list and the Dify
plugin's tool YAML are all made from what this returns. Everything is checked when the app is
built, so a broken manifest stops the start-up with a message naming the file and the field,
instead of failing at the first call.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import msgspec
import yaml

from .manifest import LOCALES, ToolManifest

MANIFEST_DIR = Path(__file__).parent / "manifests"
COMMON = "_common.yaml"
USE = "$use"


class ManifestError(Exception):
    """A tool manifest is missing, malformed or inconsistent; the message says where."""


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: cannot be read as YAML: {exc}") from None


class _Common:
    def __init__(self, path: Path) -> None:
        data = _read(path) if path.exists() else {}
        if not isinstance(data, dict) or set(data) - {"parameters", "schemas"}:
            raise ManifestError(f"{path}: must be a mapping of `parameters` and `schemas`")
        self.path = path
        self.parameters: dict[str, Any] = data.get("parameters") or {}
        self.schemas: dict[str, Any] = data.get("schemas") or {}
        for section in (self.parameters, self.schemas):
            if not isinstance(section, dict):
                raise ManifestError(f"{path}: `parameters` and `schemas` must be mappings by id")

    def _shared(self, table: dict[str, Any], node: dict[str, Any], where: str) -> dict[str, Any]:
        ref = node[USE]
        if not isinstance(ref, str) or ref not in table:
            raise ManifestError(f"{where}: `$use: {ref}` names nothing in {self.path.name}")
        base = table[ref]
        if not isinstance(base, dict):
            raise ManifestError(f"{self.path}: {ref!r} must be a mapping")
        return {**copy.deepcopy(base), **{k: v for k, v in node.items() if k != USE}}

    def parameter(self, node: Any, where: str) -> Any:
        if isinstance(node, dict) and USE in node:
            return self._shared(self.parameters, node, where)
        return node

    def schema(self, node: Any, where: str, depth: int = 0) -> Any:
        if depth > 32:
            raise ManifestError(f"{where}: `$use` nests too deep (a cycle?)")
        if isinstance(node, dict):
            if USE in node:
                node = self._shared(self.schemas, node, where)
                return self.schema(node, where, depth + 1)
            return {k: self.schema(v, f"{where}.{k}", depth) for k, v in node.items()}
        if isinstance(node, list):
            return [self.schema(v, f"{where}[{i}]", depth) for i, v in enumerate(node)]
        return node


def _check_locales(manifest: ToolManifest, where: str) -> None:
    labelled = [
        ("identity.label", manifest.identity.label),
        ("description.human", manifest.description.human),
    ]
    for i, p in enumerate(manifest.parameters):
        labelled += [
            (f"parameters[{i}].label", p.label),
            (f"parameters[{i}].human_description", p.human_description),
        ]
        for j, o in enumerate(p.options or []):
            labelled.append((f"parameters[{i}].options[{j}].label", o.label))
    for field, texts in labelled:
        missing = [loc for loc in LOCALES if not (texts.get(loc) or "").strip()]
        if missing:
            raise ManifestError(f"{where}: {field} lacks {', '.join(missing)}")


def _check_parameters(manifest: ToolManifest, where: str) -> None:
    seen: set[str] = set()
    for i, p in enumerate(manifest.parameters):
        at = f"{where}: parameters[{i}] ({p.name!r})"
        if p.name in seen:
            raise ManifestError(f"{at}: declared twice")
        seen.add(p.name)
        if not p.llm_description.strip():
            raise ManifestError(f"{at}: llm_description is empty")
        if (p.type == "select") != bool(p.options):
            raise ManifestError(f"{at}: options belong to, and are required by, type select")
        if p.min is not None and p.max is not None and p.min > p.max:
            raise ManifestError(f"{at}: min is above max")
        if p.required and p.default is not None:
            raise ManifestError(f"{at}: a required parameter cannot have a default")


def load_manifest(path: Path, common: _Common) -> ToolManifest:
    where = str(path)
    data = _read(path)
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: must be a mapping (identity, description, ...)")
    data = dict(data)
    params = data.get("parameters")
    if isinstance(params, list):
        data["parameters"] = [
            common.parameter(p, f"{where}: parameters[{i}]") for i, p in enumerate(params)
        ]
    if "output_schema" in data:
        data["output_schema"] = common.schema(data["output_schema"], f"{where}: output_schema")
    try:
        manifest = msgspec.convert(data, ToolManifest, strict=True)
    except msgspec.ValidationError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    if manifest.identity.name != path.stem:
        raise ManifestError(
            f"{where}: identity.name is {manifest.identity.name!r}; the file must be named "
            "after its tool"
        )
    if not manifest.description.llm.strip():
        raise ManifestError(f"{where}: description.llm is empty")
    _check_locales(manifest, where)
    _check_parameters(manifest, where)
    return manifest


def load_manifests(directory: Path = MANIFEST_DIR) -> dict[str, ToolManifest]:
    """Every `<tool>.yaml` of the directory, resolved and checked, by tool name."""
    if not directory.is_dir():
        raise ManifestError(f"{directory}: no such manifest directory")
    common = _Common(directory / COMMON)
    paths = sorted(p for p in directory.glob("*.yaml") if not p.name.startswith("_"))
    return {p.stem: load_manifest(p, common) for p in paths}
