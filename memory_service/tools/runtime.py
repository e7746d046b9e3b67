"""What a tool is, and how one invocation runs.

An invocation has two phases:

1. `prepare` (before the response starts): parameters are checked against the manifest and the
   tool's own checks run (a bad key, bad base64, a missing filter). Any error here is a plain 4xx
   with the error envelope, as for every other endpoint.
2. `run` (the streamed response): the tool calls the same services as the HTTP API and yields
   messages, which are checked against its output_schema before each is sent. An error from here
   on cannot change the status any more, so it ends the stream with an `error` message.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import StorageUnavailable, WorkspaceGone
from ..services.container import Services
from ..services.errors import BadRequest, ServiceError
from ..services.workspaces import Principal
from ..wire import messages as m
from ..wire.errors import OutputError
from .manifest import ToolManifest, parse_parameters
from .outputs import OutputSchema

log = logging.getLogger("memory_service.tools")

# A runner yields single messages, or lists of messages that are ready together (sent in one
# write: ten thousand transcript chunks should not cost ten thousand socket writes).
Emitted = m.ToolMessage | list[m.ToolMessage]


@dataclass(frozen=True, slots=True)
class Context:
    services: Services
    principal: Principal

    @property
    def workspace_id(self) -> int:
        return self.principal.workspace_id


Prepare = Callable[[Context, dict[str, Any]], Awaitable[Any] | Any]
Run = Callable[[Context, Any], AsyncIterator[Emitted]]


@dataclass(frozen=True, slots=True)
class Runner:
    """The code of one tool; its manifest is data (tools/manifests/<name>.yaml)."""

    run: Run
    prepare: Prepare | None = None


@dataclass(frozen=True)
class Tool:
    manifest: ToolManifest
    run: Run
    # Extra checks before the stream starts; returns what `run` gets (the parameters by default).
    prepare: Prepare | None = None
    outputs: OutputSchema = field(init=False)

    def __post_init__(self) -> None:
        # Compiled once; a malformed schema fails at start-up, not at the first call.
        object.__setattr__(self, "outputs", OutputSchema(self.manifest.output_schema))

    @property
    def name(self) -> str:
        return self.manifest.name


async def prepare(tool: Tool, ctx: Context, raw: Any) -> Any:
    """Phase 1: raises ServiceError (a plain 4xx) for anything wrong with the request."""
    if not isinstance(raw, dict):
        raise BadRequest("`parameters` must be a JSON object", code="invalid_parameter")
    params = parse_parameters(tool.manifest, raw)
    if tool.prepare is None:
        return params
    result = tool.prepare(ctx, params)
    if hasattr(result, "__await__"):
        result = await result
    return result


async def invoke(tool: Tool, ctx: Context, prepared: Any) -> AsyncIterator[list[m.ToolMessage]]:
    """Phase 2: batches of checked messages; a failure ends the stream with an error message."""
    check = tool.outputs.validator()
    try:
        async for emitted in tool.run(ctx, prepared):
            batch = emitted if isinstance(emitted, list) else [emitted]
            for message in batch:
                check.check(message)
            yield batch
        check.finish()
    except ServiceError as exc:
        ctx.services.metrics.count_refusal(exc)  # 412/413 in a stream count as over HTTP
        yield [m.error(exc.message, exc.code)]
    except WorkspaceGone:
        # The key was checked (and cached) just before its workspace was deleted, here or on
        # another replica: over HTTP a 401, in a stream the same words and code.
        yield [m.error("invalid or revoked API key (its workspace was deleted)", "unauthorized")]
    except StorageUnavailable:
        yield [m.error("the service cannot store data right now; retry later", "unavailable")]
    except Exception as exc:
        if isinstance(exc, OutputError):
            # The tool broke its own contract: a server bug, logged as one, told in the stream.
            log.error("tool %s broke its output contract: %s", tool.name, exc.message)
            yield [m.error(f"tool {tool.name} failed: {exc.message}", exc.code)]
        else:
            log.exception("tool %s failed", tool.name)
            yield [m.error(f"tool {tool.name} failed: internal error", "internal_error")]
