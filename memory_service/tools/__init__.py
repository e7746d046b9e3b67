"""Workflow tools: manifests, the runners behind `/api/tools` and the check of what they emit.

The tool messages themselves (types, framings, output rules) are in `memory_service.wire`, which
the Python client shares without importing anything of the server.
"""
