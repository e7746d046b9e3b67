"""Python client of memory-service, sync and async, on httpx.

from memory_service.client import MemoryServiceClient

with MemoryServiceClient("http://127.0.0.1:8080", api_key) as ms:
    ms.memory.add("user-123", "user", "hello")
    ms.storage.set("cursor", b"42")
    outputs = ms.tools.run("memory_get", {"conversationId": "user-123"})
    print(outputs.variables["transcript"])
"""

from ..wire.messages import (
    BlobMessage,
    ErrorMessage,
    File,
    ImageMessage,
    JsonMessage,
    LinkMessage,
    NodeOutputs,
    OutputCollector,
    TextMessage,
    ToolMessage,
    UnknownMessage,
    VariableMessage,
    collect,
)
from ._protocol import (
    Added,
    BatchDelete,
    BatchDeleted,
    BatchExists,
    BatchValue,
    BatchWrite,
    BatchWritten,
    Conversation,
    Deleted,
    DeleteItem,
    Entry,
    KvItem,
    KvValueItem,
    Memory,
    MemoryPage,
    Message,
    SetItem,
    Usage,
    Written,
)
from .aio import AsyncMemoryServiceClient
from .errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    MemoryServiceError,
    NotFoundError,
    OutputError,
    PreconditionFailedError,
    QuotaExceededError,
    RateLimitedError,
    ServerError,
    StreamError,
    TooLargeError,
    ToolError,
)
from .sync import MemoryServiceClient

__all__ = [
    "Added",
    "AsyncMemoryServiceClient",
    "AuthError",
    "BadRequestError",
    "BatchDelete",
    "BatchDeleted",
    "BatchExists",
    "BatchValue",
    "BatchWrite",
    "BatchWritten",
    "Conversation",
    "DeleteItem",
    "SetItem",
    "KvValueItem",
    "BlobMessage",
    "ConflictError",
    "Deleted",
    "Entry",
    "ErrorMessage",
    "File",
    "ImageMessage",
    "JsonMessage",
    "KvItem",
    "LinkMessage",
    "Memory",
    "MemoryPage",
    "MemoryServiceClient",
    "MemoryServiceError",
    "Message",
    "NodeOutputs",
    "NotFoundError",
    "OutputCollector",
    "OutputError",
    "PreconditionFailedError",
    "QuotaExceededError",
    "RateLimitedError",
    "ServerError",
    "StreamError",
    "TextMessage",
    "TooLargeError",
    "ToolError",
    "ToolMessage",
    "UnknownMessage",
    "VariableMessage",
    "Usage",
    "Written",
    "collect",
]
