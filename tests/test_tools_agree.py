"""One source of tool definitions: the YAML manifests in memory_service/tools/manifests. Every
place a tool is described (GET /api/tools, /api/tools.yaml, MCP's tools/list, and the tool YAML
of the packed Dify plugin) is made from them, and says the same, checked here on a live server."""

from __future__ import annotations

import zipfile
from pathlib import Path

import httpx
import msgspec
import yaml

from memory_service.settings import sqlite_url
from memory_service.tools.loader import load_manifests
from memory_service.tools.manifest import ToolManifest, input_schema, manifest_dict
from tests.support.difyenv import pack
from tests.support.live import new_workspace
from tests.support.mcp import bearer, connect
from tests.support.server import LiveServer


async def test_every_description_of_a_tool_agrees(tmp_path: Path) -> None:
    source = [manifest_dict(m) for m in load_manifests().values()]
    with LiveServer(sqlite_url(tmp_path / "memory.db"), tmp_path) as server:
        key = new_workspace(server)
        async with httpx.AsyncClient(base_url=server.url, headers=bearer(key)) as http:
            as_json = (await http.get("/api/tools")).json()["tools"]
            as_yaml = yaml.safe_load((await http.get("/api/tools.yaml")).text)
            one_by_one = [
                (await http.get(f"/api/tools/{t['identity']['name']}")).json()["tool"]
                for t in as_json
            ]
        async with connect(server.url, bearer(key)) as mcp:
            over_mcp = (await mcp.list_tools()).tools

    # the HTTP catalogue is the YAML files, resolved
    by_name = {t["identity"]["name"]: t for t in as_json}
    assert sorted(by_name) == sorted(t["identity"]["name"] for t in source)
    assert sorted(source, key=lambda t: t["identity"]["name"]) == sorted(
        as_json, key=lambda t: t["identity"]["name"]
    )
    assert as_yaml == as_json and one_by_one == as_json

    # MCP: the same tools, in the same order, with schemas made from the same manifests
    assert [t.name for t in over_mcp] == [t["identity"]["name"] for t in as_json]
    for tool in over_mcp:
        manifest = msgspec.convert(by_name[tool.name], ToolManifest)
        assert tool.title == manifest.identity.label["en_US"]
        assert tool.description == manifest.description.llm
        assert tool.input_schema == input_schema(manifest)
        assert set(tool.input_schema["properties"]) == {p.name for p in manifest.parameters}
        assert tool.output_schema == by_name[tool.name]["output_schema"]

    # Dify: the packed plugin's tool YAML is the manifest plus the class that runs it
    with zipfile.ZipFile(pack(tmp_path / "dist")) as zf:
        provider = yaml.safe_load(zf.read("provider/memory_service.yaml"))
        assert provider["tools"] == [f"tools/{t['identity']['name']}.yaml" for t in as_json]
        for path in provider["tools"]:
            doc = yaml.safe_load(zf.read(path))
            name = Path(path).stem
            assert doc.pop("extra") == {"python": {"source": f"tools/{name}.py"}}
            assert doc == by_name[name]
