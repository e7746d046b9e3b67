"""The `storage_get` tool (its definition: the service's tools/manifests/storage_get.yaml)."""

from tools import _service


class StorageGetTool(_service.MemoryServiceTool):
    tool_name = "storage_get"
