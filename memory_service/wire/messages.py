"""Tool messages (SPEC 5): the envelope `{"type", "message", "meta"}`, builders, the two wire
framings (NDJSON lines and server-sent events), and the rules that turn a stream of messages into
the outputs a workflow node sees.

Shared by the server (its tools emit these, and `tools/outputs.py` checks them with the rules
below) and the Python client (which parses and collects); nothing here touches the server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .errors import OutputError, StreamError, ToolError

DEFAULT_MIME = "application/octet-stream"
# A workflow node's own outputs; a tool variable may not shadow them.
RESERVED_VARIABLES = frozenset({"text", "files", "json"})


# --- message bodies ------------------------------------------------------------------------------


class TextBody(msgspec.Struct):
    text: str


class BlobBody(msgspec.Struct):
    blob: bytes  # base64 on the wire (msgspec encodes and decodes bytes as base64)


class JsonBody(msgspec.Struct):
    json_object: dict[str, Any] | list[Any]


class VariableBody(msgspec.Struct):
    variable_name: str
    variable_value: Any
    stream: bool = False


class ErrorBody(msgspec.Struct):
    error: str
    code: str = "error"


# --- messages (tagged by "type") -----------------------------------------------------------------


class TextMessage(msgspec.Struct, tag_field="type", tag="text"):
    message: TextBody
    meta: dict[str, Any] = {}

    @property
    def text(self) -> str:
        return self.message.text


class LinkMessage(msgspec.Struct, tag_field="type", tag="link"):
    message: TextBody  # {text: url}
    meta: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return self.message.text


class ImageMessage(msgspec.Struct, tag_field="type", tag="image"):
    message: TextBody  # {text: url}
    meta: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return self.message.text


class BlobMessage(msgspec.Struct, tag_field="type", tag="blob"):
    message: BlobBody
    meta: dict[str, Any] = {}

    @property
    def data(self) -> bytes:
        return self.message.blob

    @property
    def mime_type(self) -> str:
        return self.meta.get("mime_type") or DEFAULT_MIME

    @property
    def filename(self) -> str | None:
        return self.meta.get("filename")


class JsonMessage(msgspec.Struct, tag_field="type", tag="json"):
    message: JsonBody
    meta: dict[str, Any] = {}

    @property
    def json_object(self) -> dict[str, Any] | list[Any]:
        return self.message.json_object


class VariableMessage(msgspec.Struct, tag_field="type", tag="variable"):
    message: VariableBody
    meta: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.message.variable_name

    @property
    def value(self) -> Any:
        return self.message.variable_value

    @property
    def stream(self) -> bool:
        return self.message.stream


class ErrorMessage(msgspec.Struct, tag_field="type", tag="error"):
    """Ends a stream that failed; nothing follows it."""

    message: ErrorBody
    meta: dict[str, Any] = {}

    @property
    def error(self) -> str:
        return self.message.error

    @property
    def code(self) -> str:
        return self.message.code


class UnknownMessage(msgspec.Struct):
    """A message of a type this version does not know; kept, and ignored by the collector."""

    type: str
    message: Any = None
    meta: dict[str, Any] = {}


ToolMessage = (
    TextMessage
    | LinkMessage
    | ImageMessage
    | BlobMessage
    | JsonMessage
    | VariableMessage
    | ErrorMessage
)
MESSAGE_TYPES = ("text", "link", "image", "blob", "json", "variable", "error")


# --- builders ------------------------------------------------------------------------------------


def text(value: str) -> TextMessage:
    return TextMessage(TextBody(value))


def link(url: str) -> LinkMessage:
    return LinkMessage(TextBody(url))


def image(url: str) -> ImageMessage:
    return ImageMessage(TextBody(url))


def blob(data: bytes, mime_type: str | None = None, filename: str | None = None) -> BlobMessage:
    meta: dict[str, Any] = {"mime_type": mime_type or DEFAULT_MIME}
    if filename:
        meta["filename"] = filename
    return BlobMessage(BlobBody(data), meta)


def json_message(obj: dict[str, Any] | list[Any]) -> JsonMessage:
    return JsonMessage(JsonBody(obj))


def variable(name: str, value: Any, stream: bool = False) -> VariableMessage:
    return VariableMessage(VariableBody(name, value, stream))


def error(message: str, code: str = "error") -> ErrorMessage:
    return ErrorMessage(ErrorBody(message, code))


# --- wire framing --------------------------------------------------------------------------------

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ToolMessage)
_loose = msgspec.json.Decoder(UnknownMessage)


def encode_ndjson(messages: Iterable[ToolMessage]) -> bytes:
    """One JSON object per line. Every line is built whole before it is sent: JSON escapes
    newlines inside strings, so a line break only ever ends a message."""
    return _encoder.encode_lines(list(messages))


def encode_sse(messages: Iterable[ToolMessage]) -> bytes:
    """Server-sent events: `event: <type>` and the same envelope as one `data:` line."""
    out = bytearray()
    for m in messages:
        out += b"event: " + type_of(m).encode() + b"\ndata: " + _encoder.encode(m) + b"\n\n"
    return bytes(out)


def type_of(message: ToolMessage) -> str:
    # msgspec types a tag as str | int; every ToolMessage's tag is its `type` string.
    return message.__struct_config__.tag  # type: ignore[return-value]


def decode_message(raw: bytes | str) -> ToolMessage | UnknownMessage:
    """Parse one envelope; a well-formed message of an unknown type comes back as UnknownMessage."""
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        try:
            loose = _loose.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            loose = None
        if loose is not None and loose.type not in MESSAGE_TYPES:
            return loose
        raise StreamError(f"malformed tool message: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise StreamError(f"tool message is not valid JSON: {exc}") from exc


# --- node outputs --------------------------------------------------------------------------------


@dataclass
class File:
    """A file output: the bytes of a blob (or the url of an image)."""

    data: bytes | None
    mime_type: str = DEFAULT_MIME
    filename: str | None = None
    url: str | None = None


@dataclass
class NodeOutputs:
    """What a workflow node sees after a tool ran (SPEC 5)."""

    text: str = ""
    files: list[File] = field(default_factory=list)
    json: list[Any] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The node's output variables by name: `text`, `files`, `json`, then the tool's own."""
        return {"text": self.text, "files": self.files, "json": self.json, **self.variables}


class _Chunks(list):
    """A streamed variable's chunks; the value is their concatenation (joined once, at the end,
    so that ten thousand chunks cost linear time)."""


class OutputCollector:
    """Folds messages into node outputs with the rules of SPEC 5:

    - `text` messages are joined; `blob`s (and `image` urls) become `files`; `json` objects are
      listed in order; `link`s are kept in `links`;
    - a non-streamed variable replaces any earlier value of the same name;
    - a streamed variable (strings only) is appended chunk by chunk, to "" or to an earlier string;
    - `text`, `files` and `json` may not be variable names;
    - an `error` message raises ToolError.
    """

    def __init__(self) -> None:
        self._text: list[str] = []
        self._files: list[File] = []
        self._json: list[Any] = []
        self._links: list[str] = []
        self._vars: dict[str, Any] = {}

    def add(self, message: ToolMessage | UnknownMessage) -> None:
        if isinstance(message, TextMessage):
            self._text.append(message.text)
        elif isinstance(message, VariableMessage):
            self.set_variable(message.name, message.value, message.stream)
        elif isinstance(message, BlobMessage):
            self._files.append(File(message.data, message.mime_type, message.filename))
        elif isinstance(message, JsonMessage):
            self._json.append(message.json_object)
        elif isinstance(message, LinkMessage):
            self._links.append(message.url)
        elif isinstance(message, ImageMessage):
            mime = message.meta.get("mime_type") or "image/*"
            self._files.append(File(None, mime, message.meta.get("filename"), message.url))
        elif isinstance(message, ErrorMessage):
            raise ToolError(message.error, code=message.code)
        # UnknownMessage: a newer server's type; ignored rather than failing the node.

    def set_variable(self, name: str, value: Any, stream: bool) -> None:
        if not isinstance(name, str) or not name:
            raise output_error(
                "a variable name must be a non-empty string", code="invalid_variable"
            )
        if name in RESERVED_VARIABLES:
            raise output_error(
                f"{name!r} is reserved for the node's own output and cannot be a variable name",
                code="reserved_variable",
            )
        if not stream:
            self._vars[name] = value
            return
        if not isinstance(value, str):
            raise output_error(
                f"streamed variable {name!r} got a {type(value).__name__}: streamed variables "
                "are strings, appended chunk by chunk",
                code="invalid_stream_variable",
            )
        current = self._vars.get(name)
        if isinstance(current, _Chunks):
            current.append(value)
        elif current is None and name not in self._vars:
            self._vars[name] = _Chunks([value])
        elif isinstance(current, str):
            self._vars[name] = _Chunks([current, value])
        else:
            raise output_error(
                f"cannot append a streamed chunk to variable {name!r}, which holds a "
                f"{type(current).__name__}",
                code="invalid_stream_variable",
            )

    def streamed_names(self) -> list[str]:
        """Variables whose value was (last) built from streamed chunks."""
        return [k for k, v in self._vars.items() if isinstance(v, _Chunks)]

    @property
    def variables(self) -> dict[str, Any]:
        return {k: "".join(v) if isinstance(v, _Chunks) else v for k, v in self._vars.items()}

    def outputs(self) -> NodeOutputs:
        return NodeOutputs(
            text="".join(self._text),
            files=list(self._files),
            json=list(self._json),
            variables=self.variables,
            links=list(self._links),
        )


def output_error(message: str, code: str = "invalid_output") -> OutputError:
    return OutputError(message, code=code)


def collect(messages: Iterable[ToolMessage | UnknownMessage]) -> NodeOutputs:
    collector = OutputCollector()
    for m in messages:
        collector.add(m)
    return collector.outputs()
