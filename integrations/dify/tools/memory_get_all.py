"""The `memory_get_all` tool (its definition: the service's tools/manifests/memory_get_all.yaml)."""

from tools import _service


class MemoryGetAllTool(_service.MemoryServiceTool):
    tool_name = "memory_get_all"
