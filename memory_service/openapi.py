"""The OpenAPI document as committed in openapi.yaml: generated from the app, never by hand."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from .app import create_app
from .settings import Settings, sqlite_url


def openapi_dict() -> dict:
    # The document does not depend on the database; the factory never connects to this file.
    unused = Path(tempfile.gettempdir()) / "memory-service-openapi.db"
    app = create_app(Settings(database_url=sqlite_url(unused)))
    return app.openapi_schema.to_schema()


def render_openapi() -> str:
    return yaml.safe_dump(openapi_dict(), sort_keys=False, allow_unicode=True, width=100)
