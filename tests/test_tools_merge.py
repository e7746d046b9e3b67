"""The rules that turn a tool's message stream into node outputs (SPEC 5), table-driven, and the
server's check of what a tool emits against its output_schema."""

from __future__ import annotations

from typing import Any

import pytest

from memory_service.client import OutputError, StreamError, ToolError
from memory_service.tools.manifest import (
    Description,
    Identity,
    ToolManifest,
    i18n,
    object_schema,
)
from memory_service.tools.runtime import Tool, invoke
from memory_service.wire import messages as m

V = m.variable

# (case, messages, expected variables)
MERGES: list[tuple[str, list[m.ToolMessage], dict[str, Any]]] = [
    ("one value", [V("a", 1)], {"a": 1}),
    ("chunks concatenate", [V("t", "ab", True), V("t", "c", True), V("t", "", True)], {"t": "abc"}),
    ("first chunk starts from empty", [V("t", "x", True)], {"t": "x"}),
    ("later value replaces", [V("a", 1), V("a", {"b": 2})], {"a": {"b": 2}}),
    ("value replaces streamed text", [V("t", "ab", True), V("t", "new")], {"t": "new"}),
    ("chunks append to an earlier string", [V("t", "ab"), V("t", "c", True)], {"t": "abc"}),
    (
        "chunks after a replace start again",
        [V("t", "a", True), V("t", "b"), V("t", "c", True)],
        {"t": "bc"},
    ),
    ("null is a value", [V("a", "x"), V("a", None)], {"a": None}),
    (
        "names are independent",
        [V("t", "a", True), V("u", "1", True), V("t", "b", True)],
        {"t": "ab", "u": "1"},
    ),
    ("unicode chunks", [V("t", "日本", True), V("t", "語🙂", True)], {"t": "日本語🙂"}),
]

# (case, messages, error code)
REFUSALS: list[tuple[str, list[m.ToolMessage], str]] = [
    ("reserved text", [V("text", "x")], "reserved_variable"),
    ("reserved json", [V("json", [])], "reserved_variable"),
    ("reserved files", [V("files", "x", True)], "reserved_variable"),
    ("streamed number", [V("n", 1, True)], "invalid_stream_variable"),
    ("streamed object", [V("o", {"a": 1}, True)], "invalid_stream_variable"),
    ("streamed null", [V("o", None, True)], "invalid_stream_variable"),
    ("streamed bool", [V("o", True, True)], "invalid_stream_variable"),
    ("chunk onto a number", [V("n", 1), V("n", "x", True)], "invalid_stream_variable"),
    ("empty name", [V("", 1)], "invalid_variable"),
]


@pytest.mark.parametrize(("case", "messages", "expected"), MERGES, ids=[c[0] for c in MERGES])
def test_variable_merge_rules(case: str, messages: list, expected: dict) -> None:
    assert m.collect(messages).variables == expected
    # the same rules hold for the wire form: encode, parse back, collect
    wire = m.encode_ndjson(messages).splitlines()
    assert m.collect(m.decode_message(line) for line in wire).variables == expected


@pytest.mark.parametrize(("case", "messages", "code"), REFUSALS, ids=[c[0] for c in REFUSALS])
def test_variable_refusals(case: str, messages: list, code: str) -> None:
    with pytest.raises(OutputError) as caught:
        m.collect(messages)
    assert caught.value.code == code


def test_node_outputs_text_files_json() -> None:
    out = m.collect(
        [
            m.text("Hello, "),
            m.json_message({"a": 1}),
            m.blob(b"\x00\xff", "image/png", "dot.png"),
            m.text("world"),
            m.link("https://example.com/x"),
            m.image("https://example.com/i.png"),
            m.blob(b"raw"),
            m.json_message({"b": [2]}),
            V("v", 3),
        ]
    )
    assert out.text == "Hello, world"
    assert out.json == [{"a": 1}, {"b": [2]}]
    assert [(f.data, f.mime_type, f.filename, f.url) for f in out.files] == [
        (b"\x00\xff", "image/png", "dot.png", None),
        (None, "image/*", None, "https://example.com/i.png"),
        (b"raw", "application/octet-stream", None, None),
    ]
    assert out.links == ["https://example.com/x"]
    assert out.as_dict() == {"text": out.text, "files": out.files, "json": out.json, "v": 3}


def test_an_error_message_raises_with_its_code() -> None:
    with pytest.raises(ToolError) as caught:
        m.collect([m.text("a"), m.error("quota exceeded", "quota_exceeded")])
    assert (caught.value.message, caught.value.code) == ("quota exceeded", "quota_exceeded")


def test_wire_shapes() -> None:
    lines = m.encode_ndjson(
        [m.blob(bytes(range(256))), m.variable("t", "a\nb", True), m.error("x", "y")]
    )
    assert lines.count(b"\n") == 3  # a newline inside a value is escaped, never a line break
    first, second, third = (m.decode_message(x) for x in lines.splitlines())
    assert first.data == bytes(range(256)) and first.mime_type == "application/octet-stream"
    assert (second.name, second.value, second.stream) == ("t", "a\nb", True)
    assert (third.error, third.code) == ("x", "y")
    sse = m.encode_sse([m.text("hi")])
    assert sse == b'event: text\ndata: {"type":"text","message":{"text":"hi"},"meta":{}}\n\n'


def test_unknown_types_are_kept_and_ignored_but_malformed_ones_fail() -> None:
    msg = m.decode_message(b'{"type":"log","message":{"x":1},"meta":{}}')
    assert isinstance(msg, m.UnknownMessage) and msg.type == "log"
    assert m.collect([msg, m.text("a")]).text == "a"
    for bad in (b'{"type":"text","message":{}}', b"{not json", b'{"type":"variable"}'):
        with pytest.raises(StreamError):
            m.decode_message(bad)


# --- the server's check of a tool's output -------------------------------------------------------


def _tool(schema_props: dict, emit: list) -> Tool:
    async def run(ctx: Any, params: Any):  # noqa: ANN202
        for item in emit:
            yield item

    manifest = ToolManifest(
        identity=Identity(name="t", author="tests", label=i18n("t", "t", "t")),
        description=Description(human=i18n("t", "t", "t"), llm="t"),
        parameters=[],
        output_schema=object_schema(schema_props),
    )
    return Tool(manifest, run)


async def _run(tool: Tool) -> list[m.ToolMessage]:
    out = []
    async for batch in invoke(tool, None, {}):  # type: ignore[arg-type]
        out.extend(batch)
    return out


STRING = {"type": "string"}
COUNT = {"type": "integer", "minimum": 0}


@pytest.mark.parametrize(
    ("case", "props", "emit", "code"),
    [
        ("all good", {"s": STRING, "n": COUNT}, [V("s", "a", True), V("n", 1)], None),
        ("declared variable missing", {"s": STRING, "n": COUNT}, [V("s", "a")], "missing_variable"),
        ("wrong type", {"n": COUNT}, [V("n", "1")], "invalid_output"),
        ("out of range", {"n": COUNT}, [V("n", -1)], "invalid_output"),
        ("undeclared variable", {"n": COUNT}, [V("n", 1), V("x", 1)], "undeclared_variable"),
        ("reserved name", {"n": COUNT}, [V("n", 1), V("text", "x")], "reserved_variable"),
        ("streamed non-string", {"s": STRING}, [V("s", 5, True)], "invalid_stream_variable"),
        (
            "joined chunks break the schema",
            {"s": {"type": "string", "maxLength": 2}},
            [V("s", "ab", True), V("s", "c", True)],
            "invalid_output",
        ),
        (
            "streamed onto an int",
            {"n": COUNT},
            [V("n", 1), V("n", "2", True)],
            "invalid_stream_variable",
        ),
    ],
)
async def test_output_check(case: str, props: dict, emit: list, code: str | None) -> None:
    messages = await _run(_tool(props, [m.text("summary"), *emit]))
    assert isinstance(messages[0], m.TextMessage)  # what came before a failure was sent
    last = messages[-1]
    if code is None:
        assert not any(isinstance(x, m.ErrorMessage) for x in messages)
        return
    assert isinstance(last, m.ErrorMessage) and last.code == code, last
    assert sum(isinstance(x, m.ErrorMessage) for x in messages) == 1
    # a variable that fails its own schema is never sent
    if code == "invalid_output" and len(emit) == 1:
        assert not any(isinstance(x, m.VariableMessage) for x in messages)


async def test_a_failing_tool_ends_its_stream_with_one_error() -> None:
    async def run(ctx: Any, params: Any):  # noqa: ANN202
        yield m.text("started")
        raise RuntimeError("boom")

    tool = _tool({}, [])
    broken = Tool(tool.manifest, run)
    messages = await _run(broken)
    assert [type(x) for x in messages] == [m.TextMessage, m.ErrorMessage]
    assert messages[-1].code == "internal_error" and "boom" not in messages[-1].error


def test_schemas_may_not_declare_reserved_names() -> None:
    with pytest.raises(ValueError, match="reserved"):
        _tool({"text": STRING}, [])
