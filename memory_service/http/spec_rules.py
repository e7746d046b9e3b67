"""What the OpenAPI document says beyond what Litestar infers, so that generated clients
(openapi-python-client, openapi-typescript + openapi-fetch) work without hand edits (SPEC 8).

Litestar derives the document from the handlers and the msgspec Structs; the rules the services
enforce (lengths, ranges, roles, which spelling of a field) and a few HTTP facts (binary bodies,
bodiless HEAD answers, response headers) live elsewhere, and are stated here, once, from the same
constants and settings the services use. The document is built from the code each time; nothing
edits the committed file.

Generic rules, for every operation:
- An optional query or header parameter is its plain type: `null` cannot be sent in a query or a
  header, and a nullable one types as `None | str | Unset` (and makes httpx raise on `None`).
- A request body's optional property has no `default` (openapi-typescript would make it required)
  and is not nullable unless `null` means something; the default is said in its description.
- A HEAD answer has no body; every answer names `X-Request-ID`, a 429 its `Retry-After`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
)

from ..services.kv import MAX_TTL_SECONDS, MIN_TTL_SECONDS
from ..services.media_types import MAX_MEDIA_TYPE_CHARS
from ..services.memory import ID_LENGTH, IDEMPOTENCY_KEY_LENGTH, ROLES
from ..settings import Settings

METHODS = ("get", "put", "post", "delete", "patch", "head")
DATE_TIMES = {"createdAt", "updatedAt", "expiresAt", "revokedAt"}
BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)


def _header(description: str, fmt: OpenAPIFormat | None = None) -> OpenAPIHeader:
    return OpenAPIHeader(
        schema=Schema(type=OpenAPIType.STRING, format=fmt), description=description
    )


# Response headers, declared once under components/headers.
HEADERS = {
    "RequestId": (
        "X-Request-ID",
        _header("This request's id, as in the access log (the client's own when it sent one)."),
    ),
    "RetryAfter": ("Retry-After", _header("Seconds to wait before retrying.")),
    "ETag": ("ETag", _header('The entry\'s version as a strong entity tag: `"<version>"`.')),
    "ExpiresAt": (
        "X-Expires-At",
        _header("When the entry expires (RFC 3339); absent: no expiry.", OpenAPIFormat.DATE_TIME),
    ),
    "ValueLength": ("X-Value-Length", _header("The value's size in bytes.")),
}
# Response headers beyond X-Request-ID, by operation and status (the stored value's own
# Content-Type goes unsaid: OpenAPI ignores a declared Content-Type header).
RESPONSE_HEADERS = {
    # HEAD answers GET's headers (RFC 9110 §9.1).
    "kvGet": {
        "200": ["ETag", "ExpiresAt", "ValueLength"],
        "304": ["ETag", "ExpiresAt", "ValueLength"],
    },
    "kvExists": {
        "200": ["ETag", "ExpiresAt", "ValueLength"],
        "304": ["ETag", "ExpiresAt", "ValueLength"],
    },
    "kvSet": {"200": ["ETag"], "201": ["ETag"]},
}


@dataclass(frozen=True)
class Limits:
    """Constraints of parameters and properties, as JSON Schema keywords of the plain type."""

    min_length: int | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] | None = None
    deprecated: bool = False
    fmt: OpenAPIFormat | None = None

    def apply(self, schema: Schema) -> None:
        for name in ("min_length", "max_length", "minimum", "maximum"):
            if (value := getattr(self, name)) is not None:
                setattr(schema, name, value)
        if self.deprecated:
            schema.deprecated = True
        if self.enum:
            schema.enum = list(self.enum)
        if self.fmt:
            schema.format = self.fmt


def parameter_limits(settings: Settings, operation_id: str) -> dict[tuple[str, str], Limits]:
    """Limits of parameters by (in, name), as the services check them."""
    an_id = Limits(min_length=1, max_length=ID_LENGTH)
    page = settings.max_message_page if operation_id == "memoryMessages" else None
    # A KV prefix is bytes of a key; a conversation id prefix, characters of an id.
    prefix = ID_LENGTH if operation_id == "memoryConversations" else settings.max_key_bytes
    return {
        ("query", "conversationId"): an_id,
        ("query", "id"): replace(an_id, deprecated=True),
        ("query", "blockId"): an_id,
        ("query", "blockName"): an_id,
        ("path", "block_id"): Limits(max_length=ID_LENGTH),
        ("query", "limit"): Limits(minimum=1, maximum=page or settings.max_page_size),
        ("query", "lastN"): Limits(minimum=0, maximum=settings.max_message_page),
        ("query", "ttl"): Limits(minimum=MIN_TTL_SECONDS, maximum=MAX_TTL_SECONDS),
        ("query", "cursor"): Limits(min_length=1),
        # Bytes of UTF-8; as characters, at most as many.
        ("path", "key"): Limits(min_length=1, max_length=settings.max_key_bytes),
        ("query", "prefix"): Limits(max_length=prefix),
        ("header", "Idempotency-Key"): Limits(min_length=1, max_length=IDEMPOTENCY_KEY_LENGTH),
        ("header", "If-Match"): Limits(min_length=1),
        ("header", "If-None-Match"): Limits(min_length=1),
    }


def property_limits(settings: Settings) -> dict[tuple[str, str], Limits]:
    """Limits of request body properties by (schema, property)."""
    an_id = Limits(min_length=1, max_length=ID_LENGTH)
    roles = Limits(enum=tuple(sorted(ROLES, key=["user", "assistant", "system"].index)))
    # Bytes of UTF-8; as characters, at most as many.
    a_key = Limits(min_length=1, max_length=settings.max_key_bytes)
    return {
        ("MemoryAddBody", "conversationId"): an_id,
        ("MemoryAddBody", "id"): replace(an_id, deprecated=True),
        ("MemoryAddBody", "blockId"): an_id,
        ("MemoryAddBody", "blockName"): an_id,
        ("MemoryAddBody", "role"): roles,
        ("MemoryAddBody", "messages"): Limits(),  # min/max items below
        ("MemoryAddBody", "lastN"): Limits(minimum=0, maximum=settings.max_message_page),
        ("MemoryMessageIn", "role"): roles,
        ("MemoryBlockName", "name"): an_id,
        ("KvBatchSetItem", "key"): a_key,
        ("KvBatchSetItem", "ttl"): Limits(minimum=MIN_TTL_SECONDS, maximum=MAX_TTL_SECONDS),
        ("KvBatchSetItem", "contentType"): Limits(max_length=MAX_MEDIA_TYPE_CHARS),
        ("KvBatchSetItem", "ifMatch"): Limits(min_length=1),
        ("KvBatchSetItem", "ifNoneMatch"): Limits(min_length=1),
        ("KvBatchDeleteItem", "key"): a_key,
        ("KvBatchDeleteItem", "ifMatch"): Limits(min_length=1),
        ("KvBatchDeleteItem", "ifNoneMatch"): Limits(min_length=1),
        ("CreateKey", "label"): Limits(max_length=128),
        ("CreateWorkspace", "name"): Limits(min_length=1, max_length=128),
        ("CreateWorkspace", "quotaBytes"): Limits(minimum=0),
        ("SetQuota", "quotaBytes"): Limits(minimum=0),
    }


# Rules a schema cannot express as keywords a generator understands: said in its description,
# and checked by the server (400). Also the fields every request of that shape needs.
BODY_RULES = {
    "MemoryAddBody": (
        "Send `conversationId` (or its deprecated alias `id`; both given must agree), and either "
        "`role` + `content` for one message or `messages` for a batch appended in order, not "
        "both. Anything else is a 400 that changes nothing.",
        ["conversationId"],
    ),
}


def finish(openapi: OpenAPI, settings: Settings) -> OpenAPI:
    schemas = openapi.components.schemas or {}
    openapi.components.headers = {
        **(openapi.components.headers or {}),
        **{name: header for name, (_, header) in HEADERS.items()},
    }
    request_schemas = set()
    for _path, method, operation in _operations(openapi):
        limits = parameter_limits(settings, operation.operation_id or "")
        for param in operation.parameters or []:
            if isinstance(param, Parameter):
                _finish_parameter(param, limits.get((param.param_in, param.name)))
        if operation.request_body and not isinstance(operation.request_body, Reference):
            for media in (operation.request_body.content or {}).values():
                if isinstance(media.schema, Schema) and any(
                    map(_is_null, media.schema.one_of or [])
                ):
                    # An optional body (`T | None`): T, and not required, rather than a
                    # oneOf that importers cannot read as an object.
                    (media.schema,) = [s for s in media.schema.one_of or [] if not _is_null(s)]
                    operation.request_body.required = False
                if isinstance(media.schema, Schema) and media.schema.type == OpenAPIType.OBJECT:
                    # An inline object body, as a named component: importers take a body's
                    # parameters from an object reached by one $ref.
                    name = f"{(operation.operation_id or 'request')[:1].upper()}"
                    name += f"{(operation.operation_id or 'request')[1:]}Body"
                    schemas[name] = replace(media.schema, title=media.schema.title or name)
                    media.schema = Reference(f"#/components/schemas/{name}")
                if isinstance(media.schema, Reference):
                    request_schemas.add(media.schema.ref.rsplit("/", 1)[-1])
        _finish_responses(method, operation)
    request_schemas |= _nested(request_schemas, schemas)
    props = property_limits(settings)
    for name, schema in schemas.items():
        for prop_name, prop in (schema.properties or {}).items():
            if isinstance(prop, Schema):
                _finish_property(name, prop_name, prop, schema, name in request_schemas, props)
        if name in BODY_RULES:
            rule, required = BODY_RULES[name]
            schema.description = f"{schema.description or ''} {rule}".strip()
            schema.required = sorted({*(schema.required or []), *required})
    add = schemas.get("MemoryAddBody")
    if add and isinstance(messages := (add.properties or {}).get("messages"), Schema):
        messages.min_items, messages.max_items = 1, settings.max_batch_messages
    return openapi


def _operations(openapi: OpenAPI) -> Iterator[tuple[str, str, Operation]]:
    for path, item in (openapi.paths or {}).items():
        for method in METHODS:
            if (operation := getattr(item, method, None)) is not None:
                yield path, method, operation


def _plain(schema: Schema) -> Schema:
    """`oneOf [X, null]` as X (keeping the outer description)."""
    branches = [s for s in schema.one_of or [] if not _is_null(s)]
    if schema.one_of and len(branches) == 1 and isinstance(branches[0], Schema):
        plain = replace(branches[0])
        plain.description = plain.description or schema.description
        plain.default = schema.default if plain.default is None else plain.default
        return plain
    return schema


def _is_null(schema: Schema | Reference) -> bool:
    return isinstance(schema, Schema) and schema.type == OpenAPIType.NULL


def _finish_parameter(param: Parameter, limits: Limits | None) -> None:
    if not isinstance(param.schema, Schema):
        return
    if not param.required:
        param.schema = _plain(param.schema)
    if limits:
        limits.apply(param.schema)
        param.deprecated = limits.deprecated


def _finish_property(
    schema_name: str,
    name: str,
    prop: Schema,
    parent: Schema,
    in_request: bool,
    limits: dict[tuple[str, str], Limits],
) -> None:
    target = prop
    if in_request and name not in (parent.required or []) and prop.one_of:
        # An optional property of a request body: absent, never null.
        target = _plain(prop)
        (parent.properties or {})[name] = target
    if in_request and target.default is not None:
        default = str(target.default).lower() if isinstance(target.default, bool) else None
        shown = default or (f'"{target.default}"' if isinstance(target.default, str) else None)
        if shown is not None:
            target.description = f"{target.description or ''} Default: {shown}.".strip()
        target.default = None
    if name == "success" and isinstance(target.const, bool):
        # A bare `const` (no `type: boolean`): openapi-python-client reads it as Literal[True]
        # / Literal[False] only then, and typed clients narrow an answer on it.
        target.type = None
    if name in DATE_TIMES:
        for branch in [target, *(target.one_of or [])]:
            if isinstance(branch, Schema) and branch.type == OpenAPIType.STRING:
                branch.format = OpenAPIFormat.DATE_TIME
    if rule := limits.get((schema_name, name)):
        branches = [s for s in target.one_of or [] if isinstance(s, Schema) and not _is_null(s)]
        rule.apply(branches[0] if len(branches) == 1 else target)
        if rule.deprecated:
            target.deprecated = True


def _nested(names: set[str], schemas: dict) -> set[str]:
    """Schemas referenced from these ones (a request body's items are request shapes too)."""
    found: set[str] = set()
    todo = list(names)
    while todo:
        schema = schemas.get(todo.pop())
        for ref in _refs(schema):
            if ref not in names and ref not in found:
                found.add(ref)
                todo.append(ref)
    return found


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, Reference):
        yield node.ref.rsplit("/", 1)[-1]
    elif isinstance(node, Schema):
        for child in [node.items, *(node.one_of or []), *(node.properties or {}).values()]:
            yield from _refs(child)


def _finish_responses(method: str, operation: Operation) -> None:
    extra = RESPONSE_HEADERS.get(operation.operation_id or "", {})
    for status, response in (operation.responses or {}).items():
        if not isinstance(response, OpenAPIResponse):
            continue
        if method == "head":
            response.content = None  # HEAD answers carry no body, whatever the status
        names = [*extra.get(status, []), *(["RetryAfter"] if status == "429" else []), "RequestId"]
        response.headers = {
            **(response.headers or {}),
            **{HEADERS[n][0]: Reference(f"#/components/headers/{n}") for n in names},
        }
