"""A small compiled JSON Schema checker for the subset the tools' output_schemas use.

Why not `jsonschema` at runtime: it re-creates a validator object per node it descends into, so
checking the `memories` of one 1,000-message page took ~35 ms, several times the read itself.
This compiles a schema once into nested closures (~20x faster). It knows only the keywords
below and refuses any other at compile time, so nothing is ever skipped silently; every tool
schema is also meta-checked by `jsonschema` at import, and the tests validate tool outputs with
`jsonschema` itself and compare the two checkers on many values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Check = Callable[[Any, str], str | None]  # (value, where) -> first problem, or None

_ANNOTATIONS = {"description", "title", "examples", "default", "$comment"}
_KNOWN = _ANNOTATIONS | {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
}


def _is_integer(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v.is_integer())


_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list | tuple),
    "object": lambda v: isinstance(v, dict),
}


def _json_equal(a: Any, b: Any) -> bool:
    # JSON equality: true is not 1, 1 is 1.0.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _at(where: str) -> str:
    return f" (at {where})" if where else ""


def compile_schema(schema: dict[str, Any] | bool) -> Check:
    if schema is True:
        return lambda v, w: None
    if schema is False:
        return lambda v, w: f"no value is allowed here{_at(w)}"
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(f"the tool schema checker does not support {sorted(unknown)}")
    checks: list[Check] = []

    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        tests = [_TYPES[n] for n in names]
        label = " or ".join(names)

        def check_type(v: Any, w: str) -> str | None:
            if any(t(v) for t in tests):
                return None
            return f"{v!r:.80} is not of type {label}{_at(w)}"

        checks.append(check_type)

    if "enum" in schema:
        allowed = list(schema["enum"])

        def check_enum(v: Any, w: str) -> str | None:
            if any(_json_equal(v, a) for a in allowed):
                return None
            return f"{v!r:.80} is not one of {allowed}{_at(w)}"

        checks.append(check_enum)

    if "minimum" in schema:
        low = schema["minimum"]

        def check_minimum(v: Any, w: str) -> str | None:
            if _TYPES["number"](v) and v < low:
                return f"{v!r} is less than the minimum of {low}{_at(w)}"
            return None

        checks.append(check_minimum)

    if "maximum" in schema:
        high = schema["maximum"]

        def check_maximum(v: Any, w: str) -> str | None:
            if _TYPES["number"](v) and v > high:
                return f"{v!r} is greater than the maximum of {high}{_at(w)}"
            return None

        checks.append(check_maximum)

    for key, longer in (("minLength", False), ("maxLength", True)):
        if key in schema:
            limit = int(schema[key])

            def check_length(
                v: Any, w: str, limit: int = limit, longer: bool = longer
            ) -> str | None:
                if isinstance(v, str):
                    n = len(v)  # code points, as JSON Schema counts
                    if (n > limit) if longer else (n < limit):
                        side = "long" if longer else "short"
                        return f"a string of {n} characters is too {side} (limit {limit}){_at(w)}"
                return None

            checks.append(check_length)

    if "items" in schema:
        item = compile_schema(schema["items"])

        def check_items(v: Any, w: str) -> str | None:
            if isinstance(v, list | tuple):
                for i, x in enumerate(v):
                    problem = item(x, f"{w}/{i}" if w else str(i))
                    if problem:
                        return problem
            return None

        checks.append(check_items)

    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        props = {k: compile_schema(s) for k, s in schema.get("properties", {}).items()}
        required = list(schema.get("required", []))
        extra = schema.get("additionalProperties", True)
        extra_check = compile_schema(extra) if extra is not True else None

        def check_object(v: Any, w: str) -> str | None:
            if not isinstance(v, dict):
                return None
            for name in required:
                if name not in v:
                    return f"{name!r} is a required property{_at(w)}"
            for name, x in v.items():
                sub = props.get(name, extra_check)
                if sub is not None:
                    problem = sub(x, f"{w}/{name}" if w else name)
                    if problem:
                        return problem
            return None

        checks.append(check_object)

    if not checks:
        return lambda v, w: None
    if len(checks) == 1:
        return checks[0]

    def check_all(v: Any, w: str) -> str | None:
        for c in checks:
            problem = c(v, w)
            if problem:
                return problem
        return None

    return check_all
