"""The tool manifests are data (memory_service/tools/manifests/*.yaml), read and checked when the
app is built: every way a manifest can be broken stops the start-up with a message that names the
file and what is wrong in it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from memory_service.app import create_app
from memory_service.settings import Settings
from memory_service.tools import catalogue
from memory_service.tools.loader import MANIFEST_DIR, ManifestError

Edit = Callable[[dict], None]


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "manifests"
    shutil.copytree(MANIFEST_DIR, target)
    return target


def _edit(directory: Path, name: str, edit: Edit) -> None:
    path = directory / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


def _param(data: dict, name: str) -> dict:
    return next(p for p in data["parameters"] if p.get("name", p.get("$use")) == name)


CASES: list[tuple[str, str, Edit, str]] = [
    (
        "label without a locale",
        "memory_add",
        lambda d: d["identity"]["label"].pop("ja_JP"),
        "memory_add.yaml: identity.label lacks ja_JP",
    ),
    (
        "parameter label without a locale",
        "storage_set",
        lambda d: _param(d, "value")["label"].pop("zh_Hans"),
        "storage_set.yaml: parameters[1].label lacks zh_Hans",
    ),
    (
        "wrong type",
        "storage_get",
        lambda d: d["identity"].update(name=5),
        "storage_get.yaml: Expected `str`, got `int` - at `$.identity.name`",
    ),
    (
        "unknown field",
        "storage_exist",
        lambda d: d["description"].update(llm_text="x"),
        "storage_exist.yaml: Object contains unknown field `llm_text` - at `$.description`",
    ),
    (
        "unknown parameter type",
        "storage_list",
        lambda d: _param(d, "prefix").update(type="text"),
        "storage_list.yaml: Invalid enum value 'text' - at `$.parameters[0].type`",
    ),
    (
        "file not named after the tool",
        "memory_delete",
        lambda d: d["identity"].update(name="memory_remove"),
        "memory_delete.yaml: identity.name is 'memory_remove'; the file must be named after "
        "its tool",
    ),
    (
        "shared piece that does not exist",
        "memory_get",
        lambda d: d["parameters"].append({"$use": "nope"}),
        "memory_get.yaml: parameters[7]: `$use: nope` names nothing in _common.yaml",
    ),
    (
        "parameter declared twice",
        "storage_delete",
        lambda d: d["parameters"].append({"$use": "key"}),
        "storage_delete.yaml: parameters[1] ('key'): declared twice",
    ),
    (
        "select without options",
        "memory_add",
        lambda d: _param(d, "role").pop("options"),
        "memory_add.yaml: parameters[1] ('role'): options belong to, and are required by, "
        "type select",
    ),
    (
        "output_schema that is no JSON Schema",
        "storage_exist",
        lambda d: d["output_schema"].update(type="thing"),
        "storage_exist.yaml: output_schema: 'thing' is not valid under any of the given schemas",
    ),
    (
        "output_schema declaring a reserved variable",
        "storage_exist",
        lambda d: d["output_schema"]["properties"].update(text={"type": "string"}),
        "storage_exist.yaml: output_schema: output_schema declares reserved names: ['text']",
    ),
    (
        "parameter type with no JSON form (for MCP)",
        "storage_get",
        lambda d: d["parameters"].append({"$use": "key", "name": "upload", "type": "file"}),
        "storage_get.yaml: parameters: parameter 'upload' of type 'file' has no JSON Schema form",
    ),
    (
        "output_schema with a keyword the checker cannot check",
        "storage_exist",
        lambda d: d["output_schema"]["properties"]["key"].update(pattern="^a"),
        "storage_exist.yaml: output_schema: the tool schema checker does not support ['pattern']",
    ),
]


@pytest.mark.parametrize(("case", "tool", "edit", "message"), CASES, ids=[c[0] for c in CASES])
def test_a_broken_manifest_is_refused_with_file_and_field(
    tmp_path: Path, case: str, tool: str, edit: Edit, message: str
) -> None:
    directory = _copy(tmp_path)
    _edit(directory, tool, edit)
    with pytest.raises(ManifestError) as caught:
        catalogue.build(directory)
    assert str(caught.value).startswith(str(directory))
    assert str(caught.value).endswith(message), str(caught.value)


def test_unreadable_yaml(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    (directory / "storage_get.yaml").write_text("identity: [unclosed\n")
    with pytest.raises(ManifestError, match=r"storage_get\.yaml: cannot be read as YAML"):
        catalogue.build(directory)


def test_every_tool_needs_a_manifest_and_every_manifest_a_tool(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    (directory / "storage_list.yaml").unlink()
    with pytest.raises(ManifestError, match=r"no manifest for tool\(s\) storage_list$"):
        catalogue.build(directory)
    directory = _copy(tmp_path / "again")
    shutil.copy(directory / "storage_get.yaml", directory / "storage_fetch.yaml")
    _edit(directory, "storage_fetch", lambda d: d["identity"].update(name="storage_fetch"))
    with pytest.raises(ManifestError, match=r"unknown tool\(s\) storage_fetch \(no code"):
        catalogue.build(directory)


def test_the_app_does_not_start_on_a_broken_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _copy(tmp_path)
    _edit(directory, "memory_add", lambda d: d["description"].update(llm=" "))
    monkeypatch.setattr(catalogue, "MANIFEST_DIR", directory)
    catalogue.tools.cache_clear()
    try:
        with pytest.raises(ManifestError, match=r"memory_add\.yaml: description\.llm is empty"):
            create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db"))
    finally:
        catalogue.tools.cache_clear()


def test_shared_pieces_are_inlined_with_overrides() -> None:
    tools = catalogue.tools()
    add = {p.name: p for p in tools["memory_add"].manifest.parameters}
    get = {p.name: p for p in tools["memory_get"].manifest.parameters}
    # one shared definition, `required` overridden where the tool needs it
    assert add["conversationId"].required is True and get["conversationId"].required is False
    assert add["conversationId"].label == get["conversationId"].label
    listing = {p.name: p for p in tools["storage_list"].manifest.parameters}
    assert listing["cursor"].form == "llm" and get["cursor"].form == "form"
    memory = tools["memory_add"].manifest.output_schema["properties"]["memory"]
    assert memory["description"] == "The memory with the appended message."
    assert memory["properties"]["blockName"] == {"type": ["string", "null"]}
    text = "\n".join(p.read_text() for p in MANIFEST_DIR.glob("*.yaml"))
    assert "$use" not in catalogue.to_yaml(catalogue.manifests()) and "$use" in text
