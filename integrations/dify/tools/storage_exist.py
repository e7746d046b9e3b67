"""The `storage_exist` tool (its definition: the service's tools/manifests/storage_exist.yaml)."""

from tools import _service


class StorageExistTool(_service.MemoryServiceTool):
    tool_name = "storage_exist"
