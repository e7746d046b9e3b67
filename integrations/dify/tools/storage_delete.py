"""The `storage_delete` tool (its definition: the service's tools/manifests/storage_delete.yaml)."""

from tools import _service


class StorageDeleteTool(_service.MemoryServiceTool):
    tool_name = "storage_delete"
