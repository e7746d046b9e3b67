"""Tool manifests, shaped like a Dify plugin's tool YAML (identity / description / parameters /
output_schema), and the check of invocation parameters against them.

The manifests themselves are data: `tools/manifests/*.yaml`, read by `tools/loader.py`.
Labels are `{locale: text}` maps (en_US, zh_Hans and ja_JP are required for every tool).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec

from ..services.errors import BadRequest

AUTHOR = "memory-service"
I18n = dict[str, str]
LOCALES = ("en_US", "zh_Hans", "ja_JP")
ParamType = Literal["string", "number", "boolean", "select", "secret-input", "file", "files"]
Form = Literal["llm", "form"]


class Identity(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    author: str
    label: I18n


class Description(msgspec.Struct, forbid_unknown_fields=True):
    human: I18n
    llm: str


class Option(msgspec.Struct, forbid_unknown_fields=True):
    value: str
    label: I18n


class ToolParameter(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    name: str
    type: ParamType
    required: bool
    label: I18n
    human_description: I18n
    llm_description: str
    form: Form  # always written: Dify reads it to decide who fills the parameter
    default: Any = None
    options: list[Option] | None = None
    min: float | None = None
    max: float | None = None


class ToolManifest(msgspec.Struct, forbid_unknown_fields=True):
    identity: Identity
    description: Description
    parameters: list[ToolParameter]
    output_schema: dict[str, Any]

    @property
    def name(self) -> str:
        return self.identity.name


def i18n(en: str, zh: str, ja: str) -> I18n:
    return {"en_US": en, "zh_Hans": zh, "ja_JP": ja}


def object_schema(properties: dict[str, Any]) -> dict[str, Any]:
    """An output_schema: every declared variable is emitted on success, nothing undeclared."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


# --- parameters of one invocation ----------------------------------------------------------------

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _bad(name: str, why: str) -> BadRequest:
    return BadRequest(f"parameter {name!r} {why}", code="invalid_parameter")


def _coerce(p: ToolParameter, value: Any) -> Any:
    """The value as its declared type. Workflow engines often pass every form value as a string,
    so "3" is accepted for a number and "true"/"false" for a boolean; nothing else is guessed."""
    if p.type in ("string", "secret-input"):
        if not isinstance(value, str):
            raise _bad(p.name, f"must be a string, not {type(value).__name__}")
        return value
    if p.type == "select":
        allowed = [o.value for o in p.options or []]
        if not isinstance(value, str) or value not in allowed:
            raise _bad(p.name, f"must be one of {allowed}")
        return value
    if p.type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _bad(p.name, "must be a boolean")
    if p.type == "number":
        number: float | int
        if isinstance(value, bool):
            raise _bad(p.name, "must be a number, not a boolean")
        if isinstance(value, int | float):
            number = value
        elif isinstance(value, str):
            try:
                number = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                raise _bad(p.name, f"must be a number, got {value!r}") from None
        else:
            raise _bad(p.name, f"must be a number, not {type(value).__name__}")
        if isinstance(number, float) and not math.isfinite(number):
            raise _bad(p.name, "must be a finite number")
        if p.min is not None and number < p.min:
            raise _bad(p.name, f"must be at least {p.min:g}")
        if p.max is not None and number > p.max:
            raise _bad(p.name, f"must be at most {p.max:g}")
        return number
    raise _bad(p.name, f"has type {p.type!r}, which this tool cannot take")


def whole_number(name: str, value: Any) -> int | None:
    """A number parameter that must be an integer (a page size, a message count)."""
    if isinstance(value, float):
        if not value.is_integer():
            raise _bad(name, "must be a whole number")
        return int(value)
    number: int | None = value  # coerced against the manifest: an int, or None when absent
    return number


def parse_parameters(manifest: ToolManifest, given: dict[str, Any]) -> dict[str, Any]:
    """Checked, typed parameters: every declared name present (None or its default when optional
    and absent), unknown names refused. `null` counts as absent."""
    known = {p.name: p for p in manifest.parameters}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise BadRequest(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for tool "
            f"{manifest.name!r}; it takes {', '.join(known) or 'none'}",
            code="invalid_parameter",
        )
    out: dict[str, Any] = {}
    for name, p in known.items():
        value = given.get(name)
        if value is None:
            if p.required:
                raise BadRequest(
                    f"parameter {name!r} is required by tool {manifest.name!r}",
                    code="missing_parameter",
                )
            out[name] = p.default
            continue
        out[name] = _coerce(p, value)
    return out


def _parameter_schema(p: ToolParameter) -> dict[str, Any]:
    schema: dict[str, Any]
    if p.type == "select":
        schema = {"type": "string", "enum": [o.value for o in p.options or []]}
    elif p.type in ("string", "secret-input"):
        schema = {"type": "string"}
    elif p.type == "number":
        schema = {"type": "number"}
        if p.min is not None:
            schema["minimum"] = p.min
        if p.max is not None:
            schema["maximum"] = p.max
    elif p.type == "boolean":
        schema = {"type": "boolean"}
    else:  # file(s): no tool takes one, and JSON-RPC has no file type to offer
        raise ValueError(f"parameter {p.name!r} of type {p.type!r} has no JSON Schema form")
    schema["title"] = p.label["en_US"]
    schema["description"] = p.llm_description
    if p.default is not None:
        schema["default"] = p.default
    return schema


def input_schema(manifest: ToolManifest) -> dict[str, Any]:
    """The parameters as one JSON Schema object (MCP's `inputSchema`): names, types, bounds,
    select options, defaults, the model-facing descriptions, and which are required."""
    return {
        "type": "object",
        "properties": {p.name: _parameter_schema(p) for p in manifest.parameters},
        "required": [p.name for p in manifest.parameters if p.required],
        "additionalProperties": False,
    }


def manifest_dict(manifest: ToolManifest) -> dict[str, Any]:
    """Plain data in the manifest's field order (for YAML)."""
    as_dict: dict[str, Any] = msgspec.to_builtins(manifest)
    return as_dict
