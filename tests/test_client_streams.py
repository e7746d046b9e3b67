"""The client's stream parsers: however the bytes are split, the same whole messages come out,
and a stream cut in the middle of a message is an error, never half a message."""

from __future__ import annotations

import pytest

from memory_service.client import StreamError
from memory_service.client._protocol import NdjsonParser, SseParser
from memory_service.wire import messages as m

MESSAGES = [
    m.text("héllo\nwörld"),
    m.blob(bytes(range(256)), "image/png", "a.png"),
    m.variable("t", "chunk 🙂", True),
    m.json_message({"a": [1, 2, {"b": None}]}),
    m.link("https://example.com/"),
]


def parse(parser, data: bytes, step: int) -> list:  # noqa: ANN001
    out = []
    for i in range(0, len(data), step):
        out.extend(parser.feed(data[i : i + step]))
    parser.close()
    return out


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 10_000])
@pytest.mark.parametrize("sse", [False, True], ids=["ndjson", "sse"])
def test_any_split_gives_the_same_messages(step: int, sse: bool) -> None:
    data = (m.encode_sse if sse else m.encode_ndjson)(MESSAGES)
    parser = SseParser() if sse else NdjsonParser()
    assert parse(parser, data, step) == MESSAGES


def test_sse_with_crlf_comments_and_multiline_data() -> None:
    data = (
        b': keep-alive\r\nevent: text\r\ndata: {"type":"text",\r\n'
        b'data: "message":{"text":"x"},"meta":{}}\r\n\r\n'
    )
    assert parse(SseParser(), data, 5) == [m.text("x")]


@pytest.mark.parametrize("sse", [False, True], ids=["ndjson", "sse"])
def test_a_cut_stream_is_an_error(sse: bool) -> None:
    data = (m.encode_sse if sse else m.encode_ndjson)(MESSAGES)
    parser = SseParser() if sse else NdjsonParser()
    cut = data[: len(data) - 5]
    with pytest.raises(StreamError):
        parse(parser, cut, 100)


def test_a_malformed_line_is_an_error() -> None:
    with pytest.raises(StreamError):
        parse(NdjsonParser(), b'{"type":"text","message":{"text":1},"meta":{}}\n', 100)
