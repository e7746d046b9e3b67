"""What every Memory Service tool shares: a client of the service made from the provider's
credentials, and the service's tool messages turned into Dify tool messages.

The service's tool endpoint (`POST /api/tools/{name}/invoke`) already answers in Dify's message
model (text, json, blob with its MIME type, variables, streamed variables), checked against each
tool's output_schema before it is sent. So a tool here only passes its parameters on and
translates each message one for one; what it yields is what the service's tool definition says.

Tool modules import this module (not its classes): Dify loads the one subclass of `Tool` it
finds in a tool's module, so a tool module must hold exactly one.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage

from memory_service.client import (
    AuthError,
    BlobMessage,
    ImageMessage,
    JsonMessage,
    LinkMessage,
    MemoryServiceClient,
    MemoryServiceError,
    TextMessage,
    VariableMessage,
)

TIMEOUT_SECONDS = 60.0


class CredentialError(Exception):
    """The service URL or API key does not work; the message says why."""


class ServiceToolError(Exception):
    """The service refused or failed a tool call: its message and code, as its HTTP API says."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(f"{message} ({code})")
        self.message = message
        self.code = code


def _url(credentials: Mapping[str, Any]) -> str:
    url = str(credentials.get("service_url") or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CredentialError("the service URL must be an http:// or https:// URL")
    return url


@contextmanager
def client(credentials: Mapping[str, Any]) -> Iterator[MemoryServiceClient]:
    key = str(credentials.get("api_key") or "").strip()
    if not key:
        raise CredentialError("an API key is required")
    with MemoryServiceClient(_url(credentials), key, timeout=TIMEOUT_SECONDS) as ms:
        yield ms


def check_credentials(credentials: Mapping[str, Any]) -> None:
    """A call that needs a valid key and changes nothing: the tool catalogue."""
    try:
        with client(credentials) as ms:
            ms.tools.list()
    except AuthError as exc:
        raise CredentialError(f"the service refused the API key: {exc.message}") from exc
    except MemoryServiceError as exc:
        raise CredentialError(f"the service answered an error: {exc}") from exc
    except httpx.HTTPError as exc:  # refused connection, DNS, TLS, timeout
        raise CredentialError(f"cannot reach the service: {exc}") from exc


def parameters(given: Mapping[str, Any]) -> dict[str, Any]:
    """Dify passes every declared parameter, empty form fields as None or "": those are
    absent, as the service's defaults apply."""
    return {k: v for k, v in given.items() if v is not None and v != ""}


class MemoryServiceTool(Tool):
    """Runs the service tool named `tool_name` and yields its messages as Dify messages."""

    tool_name: ClassVar[str]

    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        try:
            with client(self.runtime.credentials) as ms:
                for message in ms.tools.invoke(self.tool_name, parameters(tool_parameters)):
                    translated = self._translate(message)
                    if translated is not None:
                        yield translated
        except MemoryServiceError as exc:  # a refusal, or an error message ending the stream
            raise ServiceToolError(exc.message, exc.code) from exc
        except httpx.HTTPError as exc:  # the service went away (or never answered)
            raise ServiceToolError(f"cannot reach the service: {exc}", "unreachable") from exc

    def _translate(self, message: Any) -> ToolInvokeMessage | None:
        if isinstance(message, TextMessage):
            return self.create_text_message(message.text)
        if isinstance(message, JsonMessage):
            return self.create_json_message(message.json_object)
        if isinstance(message, VariableMessage):
            if message.stream:
                return self.create_stream_variable_message(message.name, message.value)
            return self.create_variable_message(message.name, message.value)
        if isinstance(message, BlobMessage):
            meta = {"mime_type": message.mime_type}
            if message.filename:
                meta["filename"] = message.filename
            return self.create_blob_message(message.data, meta=meta)
        if isinstance(message, LinkMessage):
            return self.create_link_message(message.url)
        if isinstance(message, ImageMessage):
            return self.create_image_message(message.url)
        return None  # a message type newer than this plugin: skipped, as Dify would
