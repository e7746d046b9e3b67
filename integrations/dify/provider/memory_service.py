"""The tool provider: checks the credentials by calling the service with them."""

from __future__ import annotations

from typing import Any

from dify_plugin import ToolProvider
from dify_plugin.errors.tool import ToolProviderCredentialValidationError
from tools import _service


class MemoryServiceProvider(ToolProvider):
    def _validate_credentials(self, credentials: dict[str, Any]) -> None:
        try:
            _service.check_credentials(credentials)
        except _service.CredentialError as exc:
            raise ToolProviderCredentialValidationError(str(exc)) from exc
