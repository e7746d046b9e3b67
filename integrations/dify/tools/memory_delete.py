"""The `memory_delete` tool (its definition: the service's tools/manifests/memory_delete.yaml)."""

from tools import _service


class MemoryDeleteTool(_service.MemoryServiceTool):
    tool_name = "memory_delete"
