"""Tools over HTTP: the catalogue (JSON and Dify-style YAML) and the streamed invoke endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from ..services.errors import BadRequest, TooLarge
from ..services.workspaces import Principal
from ..tools import catalogue, runtime
from ..tools.manifest import ToolManifest
from ..wire.messages import NDJSON, SSE, encode_ndjson, encode_sse
from .auth import admit, provide_principal
from .json_body import check_members

YAML = "application/yaml"
# Requests carry a value as base64 (4/3 of its size) plus the JSON around it.
BODY_SLACK = 64 * 1024


class ToolList(msgspec.Struct):
    success: Literal[True]
    message: str
    tools: list[ToolManifest]


class ToolOne(msgspec.Struct):
    success: Literal[True]
    message: str
    tool: ToolManifest


class InvokeRequest(msgspec.Struct, forbid_unknown_fields=True):
    parameters: dict[str, Any] = {}


_invoke_decoder = msgspec.json.Decoder(InvokeRequest)

Format = Annotated[
    Literal["json", "yaml"],
    QueryParameter(description="`yaml` answers the manifest as a Dify plugin tool YAML."),
]


def _envelope_schema() -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["type", "message", "meta"],
        properties={
            "type": Schema(
                type=OpenAPIType.STRING,
                enum=["text", "link", "image", "blob", "json", "variable", "error"],
            ),
            "message": Schema(
                type=OpenAPIType.OBJECT, description="Depends on `type`; see the README."
            ),
            "meta": Schema(type=OpenAPIType.OBJECT),
        },
    )


@dataclass
class InvokeOperation(Operation):
    """The invoke body is read by hand (its size limit depends on the settings), so its schema
    and the two streamed media types are documented here."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        properties={
                            "parameters": Schema(
                                type=OpenAPIType.OBJECT,
                                description="The tool's parameters by name (see its manifest).",
                            )
                        },
                    )
                )
            },
            description='`{"parameters": {...}}`; an empty body means no parameters.',
            required=False,
        )
        ok = self.responses and self.responses.get("200")
        if ok is not None and not isinstance(ok, dict) and hasattr(ok, "content"):
            envelope = _envelope_schema()
            ok.description = (
                "A stream of tool messages: one JSON envelope per line (application/x-ndjson), "
                "or server-sent events with `Accept: text/event-stream`. A failure after the "
                "stream started ends it with an `error` message."
            )
            ok.content = {
                NDJSON: OpenAPIMediaType(schema=envelope),
                SSE: OpenAPIMediaType(schema=envelope),
            }


@dataclass
class YamlTooOperation(Operation):
    """These answer YAML instead of JSON with `format=yaml`: document both."""

    def __post_init__(self) -> None:
        ok = self.responses and self.responses.get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content:
            ok.content[YAML] = OpenAPIMediaType(
                schema=Schema(description="The manifest(s) as Dify plugin tool YAML.")
            )


@dataclass
class YamlListOperation(Operation):
    def __post_init__(self) -> None:
        ok = self.responses and self.responses.get("200")
        if isinstance(ok, OpenAPIResponse):
            ok.content = {
                YAML: OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.ARRAY,
                        items=Schema(type=OpenAPIType.OBJECT),
                        description="Every tool's manifest as Dify plugin tool YAML.",
                    )
                )
            }


def _yaml(items: list[ToolManifest] | ToolManifest) -> Response[str]:
    return Response(catalogue.to_yaml(items), media_type=YAML)


def _wants_sse(accept: str | None) -> bool:
    accept = (accept or "").lower()
    return SSE in accept and NDJSON not in accept


async def _read_body(request: Request, limit: int) -> bytes:
    announced = request.headers.get("content-length")
    if announced and announced.isdigit() and int(announced) > limit:
        raise TooLarge(f"request body is larger than {limit} bytes", code="body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"request body is larger than {limit} bytes", code="body_too_large")
    return bytes(body)


class ToolsController(Controller):
    path = "/api"
    tags = ["tools"]
    dependencies = {"principal": Provide(provide_principal)}
    guards = [admit]  # the credential, checked before any body is read (http/auth.py)

    @get(
        "/tools",
        operation_id="toolList",
        summary="The tool catalogue",
        operation_class=YamlTooOperation,
    )
    async def list_tools(
        self, principal: NamedDependency[Principal], format: Format = "json"
    ) -> Response[ToolList]:
        if format == "yaml":
            # The declared Response[ToolList] documents the JSON answer in the OpenAPI document
            # (YamlTooOperation adds the YAML one), so the YAML response is not of that type.
            return _yaml(catalogue.manifests())  # type: ignore[return-value]
        tools = catalogue.manifests()
        return Response(ToolList(success=True, message=f"{len(tools)} tools", tools=tools))

    @get(
        "/tools.yaml",
        operation_id="toolListYaml",
        summary="The tool catalogue as Dify plugin tool YAML (one document: a list of tools)",
        media_type=YAML,
        operation_class=YamlListOperation,
        # An alias of `GET /api/tools?format=yaml`, which the document describes: generated
        # clients cannot read an application/yaml-only answer (openapi-python-client drops it
        # with a warning), and need not, having the JSON form.
        include_in_schema=False,
    )
    async def list_tools_yaml(self, principal: NamedDependency[Principal]) -> Response[str]:
        return _yaml(catalogue.manifests())

    @get(
        "/tools/{name:str}",
        operation_id="toolGet",
        summary="One tool's manifest",
        operation_class=YamlTooOperation,
    )
    async def get_tool(
        self, principal: NamedDependency[Principal], name: FromPath[str], format: Format = "json"
    ) -> Response[ToolOne]:
        tool = catalogue.get_tool(name)
        if format == "yaml":  # not the declared JSON type: see list_tools
            return _yaml(tool.manifest)  # type: ignore[return-value]
        return Response(ToolOne(success=True, message=f"Tool {name!r}", tool=tool.manifest))

    @post(
        "/tools/{name:str}/invoke",
        operation_id="toolInvoke",
        summary="Invoke a tool; its messages stream back as NDJSON or server-sent events",
        status_code=200,
        media_type=NDJSON,
        request_max_body_size=None,  # enforced below, from the settings
        operation_class=InvokeOperation,
    )
    async def invoke(
        self, request: Request, principal: NamedDependency[Principal], name: FromPath[str]
    ) -> Stream:
        tool = catalogue.get_tool(name)
        services = request.app.state.services
        limit = (services.settings.max_value_bytes + 2) // 3 * 4 + BODY_SLACK
        raw = await _read_body(request, limit)
        check_members(raw)
        try:
            body = _invoke_decoder.decode(raw) if raw.strip() else InvokeRequest()
        except RecursionError as exc:
            raise BadRequest("request body is nested too deeply", code="invalid_request") from exc
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BadRequest(
                f'request body must be {{"parameters": {{...}}}}: {exc}', code="invalid_request"
            ) from exc
        ctx = runtime.Context(services, principal)
        prepared = await runtime.prepare(tool, ctx, body.parameters)

        sse = _wants_sse(request.headers.get("accept"))
        frame = encode_sse if sse else encode_ndjson

        async def chunks() -> AsyncIterator[bytes]:
            async for batch in runtime.invoke(tool, ctx, prepared):
                yield frame(batch)

        # The Content-Type goes in the headers: a handler's media_type would override a
        # Stream's own, and this one depends on the request's Accept.
        return Stream(
            chunks(),
            headers={
                "Content-Type": SSE if sse else NDJSON,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
