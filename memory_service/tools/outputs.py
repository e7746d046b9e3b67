"""The server's check of what a tool emits: each variable against the tool's output_schema as it
is emitted (a bad value is never sent), then the whole set once the tool ends (SPEC 5)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from ..wire.messages import (
    RESERVED_VARIABLES,
    ErrorMessage,
    NodeOutputs,
    OutputCollector,
    ToolMessage,
    VariableMessage,
    output_error,
)
from .schema import compile_schema


class OutputSchema:
    """A tool's output_schema, compiled once. Each variable is checked against its property as
    it is emitted (a bad value is never sent); at the end, the streamed ones once joined, and the
    set as a whole (required variables, nothing undeclared)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        Draft202012Validator.check_schema(schema)  # a malformed schema fails at import
        if schema.get("type") != "object":
            raise ValueError("an output_schema must have type: object")
        self.schema = schema
        props = schema.get("properties", {})
        bad = RESERVED_VARIABLES & set(props)
        if bad:
            raise ValueError(f"output_schema declares reserved names: {sorted(bad)}")
        self.each = {name: compile_schema(sub) for name, sub in props.items()}
        # The whole object with each property's own check left to `each`: checked once, not
        # twice (a page of memories is the bulk of the work).
        self.shallow = compile_schema({**schema, "properties": dict.fromkeys(props, True)})
        self.closed = schema.get("additionalProperties") is False
        self.required = list(schema.get("required", []))

    def validator(self) -> OutputValidator:
        return OutputValidator(self)


class OutputValidator:
    """One invocation's check. `check(message)` before a message is sent (a bad variable is never
    sent), `finish()` after the last one."""

    def __init__(self, schema: OutputSchema) -> None:
        self.schema = schema
        self.collector = OutputCollector()

    def check(self, message: ToolMessage) -> None:
        if isinstance(message, VariableMessage):
            name = message.name
            sub = self.schema.each.get(name)
            if sub is None and self.schema.closed and name not in RESERVED_VARIABLES:
                raise output_error(
                    f"variable {name!r} is not declared in the tool's output_schema",
                    code="undeclared_variable",
                )
            if not message.stream and sub is not None:
                problem = sub(message.value, "")
                if problem:
                    raise output_error(
                        f"variable {name!r} does not match the output_schema: {problem}"
                    )
        elif isinstance(message, ErrorMessage):
            raise output_error("a tool may not emit an error message itself; it raises")
        self.collector.add(message)

    def finish(self) -> NodeOutputs:
        outputs = self.collector.outputs()
        missing = [n for n in self.schema.required if n not in outputs.variables]
        if missing:
            raise output_error(
                f"the tool did not emit declared variable(s) {', '.join(missing)}",
                code="missing_variable",
            )
        for name in self.collector.streamed_names():
            sub = self.schema.each.get(name)
            problem = sub(outputs.variables[name], "") if sub else None
            if problem:
                raise output_error(
                    f"streamed variable {name!r} does not match the output_schema: {problem}"
                )
        problem = self.schema.shallow(outputs.variables, "")
        if problem:
            raise output_error(f"output variables do not match the output_schema: {problem}")
        return outputs
