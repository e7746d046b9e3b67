"""The tools' compiled schema checker agrees with `jsonschema` on every schema the catalogue
uses, for random JSON and for near-misses of real outputs."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from memory_service.tools import catalogue
from memory_service.tools.schema import compile_schema

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["key", "role", "content", "seq", "data", "x", "count"])
            | st.text(max_size=4),
            inner,
            max_size=5,
        )
    ),
    max_leaves=12,
)

SCHEMAS: list[tuple[str, Any]] = [
    (f"{name}.{prop}", sub)
    for name, tool in sorted(catalogue.tools().items())
    for prop, sub in tool.manifest.output_schema["properties"].items()
]
SCHEMAS += [
    (f"{name}.*", t.manifest.output_schema) for name, t in sorted(catalogue.tools().items())
]
SCHEMAS += [
    ("bounded", {"type": "integer", "minimum": 0, "maximum": 3}),
    ("short", {"type": ["string", "null"], "minLength": 1, "maxLength": 3}),
    ("enum", {"enum": [1, "a", None, True]}),
    (
        "closed",
        {"type": "object", "properties": {"a": {"type": "number"}}, "additionalProperties": False},
    ),
]


def agree(schema: Any, value: Any) -> None:
    expected = Draft202012Validator(schema).is_valid(value)
    problem = compile_schema(schema)(value, "")
    assert (problem is None) == expected, (value, problem)


COMPILED = [(name, Draft202012Validator(s), compile_schema(s)) for name, s in SCHEMAS]


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_agrees_with_jsonschema_on_random_json(value: Any) -> None:
    for name, reference, ours in COMPILED:
        problem = ours(value, "")
        assert (problem is None) == reference.is_valid(value), (name, value, problem)


MEMORY = {
    "key": "c:default",
    "conversationId": "c",
    "blockId": "default",
    "blockName": None,
    "data": [{"role": "user", "content": "hi", "seq": 0}],
    "messageCount": 1,
    "createdAt": "2026-01-01T00:00:00.000Z",
    "updatedAt": "2026-01-01T00:00:00.000Z",
    "dataCursor": None,
}


def _near_misses() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = [("valid", MEMORY)]
    for field, bad in [
        ("messageCount", True),
        ("messageCount", 1.0),
        ("messageCount", -1),
        ("blockName", 3),
        ("dataCursor", "c"),
        ("data", {}),
    ]:
        miss = copy.deepcopy(MEMORY)
        miss[field] = bad
        cases.append((f"{field}={bad!r}", miss))
    for field, bad in [("role", "robot"), ("seq", "0"), ("seq", False), ("content", None)]:
        miss = copy.deepcopy(MEMORY)
        miss["data"][0][field] = bad
        cases.append((f"data.{field}={bad!r}", miss))
    miss = copy.deepcopy(MEMORY)
    del miss["key"]
    cases.append(("no key", miss))
    miss = copy.deepcopy(MEMORY)
    del miss["dataCursor"]
    cases.append(("no dataCursor", miss))
    return cases


@pytest.mark.parametrize(("case", "value"), _near_misses(), ids=[c[0] for c in _near_misses()])
def test_agrees_on_near_misses_of_a_memory(case: str, value: Any) -> None:
    schema = catalogue.tools()["memory_get"].manifest.output_schema["properties"]["memories"]
    agree(schema, [value])
    agree(schema["items"], value)


def test_unknown_keywords_are_refused_not_skipped() -> None:
    with pytest.raises(ValueError, match="pattern"):
        compile_schema({"type": "string", "pattern": "^a"})
    with pytest.raises(ValueError, match="oneOf"):
        compile_schema({"items": {"oneOf": [{"type": "string"}]}})
