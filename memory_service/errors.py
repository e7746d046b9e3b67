"""Errors raised by storage and answered by the layers above it (HTTP, the tool runtime).

Low in the house so that a controller can answer them without importing storage: storage raises
them, `services` lets them through, `http/errors.py` and `tools/runtime.py` turn them into a 401
or a 503 (or the same words in a tool stream).
"""


class StorageUnavailable(Exception):
    """The database cannot take writes in this process (its writer has stopped): answered 503,
    at once, rather than left waiting for a commit that will never come."""


class WorkspaceGone(LookupError):
    """The workspace was deleted after its key was checked (e.g. another replica deleted it while
    this one still trusted a cached key). The HTTP layer answers 401, as for a revoked key."""
