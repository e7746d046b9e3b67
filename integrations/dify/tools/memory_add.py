"""The `memory_add` tool (its definition: the service's tools/manifests/memory_add.yaml)."""

from tools import _service


class MemoryAddTool(_service.MemoryServiceTool):
    tool_name = "memory_add"
