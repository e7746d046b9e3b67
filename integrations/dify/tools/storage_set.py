"""The `storage_set` tool (its definition: the service's tools/manifests/storage_set.yaml)."""

from tools import _service


class StorageSetTool(_service.MemoryServiceTool):
    tool_name = "storage_set"
