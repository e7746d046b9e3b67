"""`POST /api/memory` answered from the ASGI scope (see http/fast_path.py): the same `add_answer`
as `MemoryController.add`.

Litestar checks the credential (its guard, before the body), reads the body, decodes the JSON,
then converts it to `MemoryAddBody` (leniently: `"lastN": "5"` passes) and answers what fails
with its own words. This path checks the credential the same way first, then decodes the body
straight into `MemoryAddBody`, strictly; a body that is not plainly valid (malformed, lenient,
too large, unannounced, cut short) is handed to Litestar untouched, so that every refusal of a
body stays Litestar's (the principal found is kept: no second authentication). A body that
repeats a member (http/json_body.py) is one of those: Litestar's request class refuses it.
"""

from __future__ import annotations

from typing import Any

from ..services.workspaces import Principal
from .auth import CREDENTIAL_HEADERS
from .fast_path import BODY_HEADERS, JsonFastPath
from .memory import add_answer
from .memory_schemas import MemoryAddBody

PATH = "/api/memory"


class MemoryAddFastPath(JsonFastPath):
    operation_id = "memoryAdd"
    method = "POST"
    path = PATH
    body_type = MemoryAddBody
    headers = CREDENTIAL_HEADERS | BODY_HEADERS | {b"idempotency-key"}

    async def respond(self, principal: Principal, data: Any, headers: dict[bytes, str]) -> object:
        return await add_answer(self.services, principal, data, headers.get(b"idempotency-key"))
