"""Adapters of agent frameworks onto the Python client, each an optional extra:

- `memory_service.client.adapters.langchain` (`memory-service[langchain]`): a LangChain
  `ByteStore` on the KV store and a `BaseChatMessageHistory` on the memory API.
- `memory_service.client.adapters.langgraph` (`memory-service[langgraph]`): a LangGraph
  `BaseStore` on the KV store.

Nothing here is imported by `memory_service.client` itself or by `serve`: the framework is only
imported when its adapter module is.
"""
