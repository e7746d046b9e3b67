"""openapi.yaml is generated from the app and committed; it must match what the app serves."""

from pathlib import Path

import yaml

from memory_service.openapi import openapi_dict

ROOT = Path(__file__).resolve().parents[1]


def test_committed_openapi_matches_the_app() -> None:
    committed = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    assert committed == openapi_dict(), "openapi.yaml is stale: run `./dev openapi` and commit it"


async def test_served_openapi_matches_the_committed_file(sqlite_api) -> None:  # noqa: ANN001
    r = await sqlite_api.client.get("/schema/openapi.json")
    assert r.status_code == 200
    assert r.json() == yaml.safe_load((ROOT / "openapi.yaml").read_text())
