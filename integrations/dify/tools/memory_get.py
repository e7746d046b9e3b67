"""The `memory_get` tool (its definition: the service's tools/manifests/memory_get.yaml)."""

from tools import _service


class MemoryGetTool(_service.MemoryServiceTool):
    tool_name = "memory_get"
