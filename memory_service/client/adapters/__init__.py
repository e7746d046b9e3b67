"""Adapters of agent frameworks onto the Python client, each an optional extra:

- `memory_service.client.adapters.langchain` (`memory-service[langchain]`): a LangChain
  `ByteStore` on the KV store and a `BaseChatMessageHistory` on the memory API.
- `memory_service.client.adapters.langgraph` (`memory-service[langgraph]`): a LangGraph
  `BaseStore` on the KV store.
- `memory_service.client.adapters.llamaindex` (`memory-service[llamaindex]`): a LlamaIndex
  `BaseChatStore` on the memory API.

What the memory API stores of a chat message is in `_messages` (one place for every chat
adapter): what it cannot store is refused with a ValueError, never dropped.

Nothing here is imported by `memory_service.client` itself or by `serve`: the framework is only
imported when its adapter module is.
"""
