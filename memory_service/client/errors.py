"""Exceptions of the Python client. They live in `memory_service.wire.errors`, beside the tool
messages that raise some of them on both sides; this module keeps the import path users know."""

from ..wire.errors import *  # noqa: F403
