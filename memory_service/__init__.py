"""memory-service: durable conversation memory and a per-workspace KV store over HTTP."""

__version__ = "0.1.0"
