"""`POST /api/kv-batch/get` answered from the ASGI scope (see http/fast_path.py): the same
`get_many_answer` as `KvBatchController.get_many`.

A batch of 100 keys costs about 0.12 ms in its handler; Litestar's routing, body and response
handling around it cost as much again and more. Read like memory adds (`JsonFastPath` in
http/fast_path.py): the credential first, then the body decoded straight into `KvBatchKeys`,
strictly, or handed to Litestar untouched when it is not plainly valid.
"""

from __future__ import annotations

from typing import Any

from ..services.workspaces import Principal
from .fast_path import JsonFastPath
from .kv_batch import KvBatchKeys, get_many_answer

PATH = "/api/kv-batch/get"


class KvBatchGetFastPath(JsonFastPath):
    operation_id = "kvBatchGet"
    method = "POST"
    path = PATH
    body_type = KvBatchKeys

    async def respond(self, principal: Principal, data: Any, headers: dict[bytes, str]) -> object:
        return await get_many_answer(self.services, principal, data.keys)
