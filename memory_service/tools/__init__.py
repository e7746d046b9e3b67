"""Workflow tools: manifests, tool messages and the runners behind `/api/tools`.

Kept import-light on purpose: the Python client imports `memory_service.tools.messages` (the
message types and the output merge rules) without pulling in the server.
"""
