"""The `storage_list` tool (its definition: the service's tools/manifests/storage_list.yaml)."""

from tools import _service


class StorageListTool(_service.MemoryServiceTool):
    tool_name = "storage_list"
