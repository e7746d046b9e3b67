"""API fuzzing: schemathesis generates requests from the committed openapi.yaml (valid ones and,
in its negative mode, invalid ones) and sends them to a real server process. Every answer must be
something other than a 5xx, carry a status code the document declares for that operation, and
have a body that matches the declared schema.

Bounded for CI: MEMORY_FUZZ_EXAMPLES (default 25) examples per operation and database, with a
fixed seed (derandomized), so a run is repeatable; raise it locally to search harder.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN_TOKEN
from tests.support.server import LiveServer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("MEMORY_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml")


@dataclass
class Target:
    server: LiveServer
    database_url: str
    key: str = ""

    def ensure_workspace(self) -> None:
        """A live key of a workspace with some data. A generated admin call may have revoked
        the key or deleted the workspace (ids and names are small and guessable): renew it."""
        if self.key:
            r = httpx.get(f"{self.server.url}/api/usage", headers=self.auth())
            if r.status_code == 200:
                return
        name = f"fuzz-{uuid.uuid4().hex[:8]}"
        r = httpx.post(f"{self.server.url}/admin/workspaces", json={"name": name}, headers=ADMIN)
        assert r.status_code == 201, r.text
        self.key = r.json()["key"]
        h = self.auth()
        for key in ("a", "b/c", "x y"):
            httpx.put(f"{self.server.url}/api/kv/{key}", content=b"v", headers=h)
        httpx.post(
            f"{self.server.url}/api/memory",
            json={"conversationId": "c", "role": "user", "content": "hi", "blockName": "n"},
            headers=h,
        )

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
def target(live_server: LiveServer) -> Target:
    target = Target(live_server, live_server.database_url)
    target.ensure_workspace()
    return target


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_as_documented(case: schemathesis.Case, target: Target) -> None:
    target.ensure_workspace()
    headers = ADMIN if case.path.startswith("/admin") else target.auth()
    server = target.server
    log = server.log_dir / f"server-{server.port}-{server.starts}.log"
    start = log.stat().st_size
    case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)
    # This request made the server log no error (what it wrote meanwhile, whatever ran before).
    with log.open("rb") as f:
        f.seek(start)
        window = f.read().decode(errors="replace")
    assert "Traceback" not in window and '"level": "ERROR"' not in window, window[-3000:]


def test_server_logged_no_errors(target: Target) -> None:
    """Nothing the fuzzer sent made the server log an unhandled error (the whole run, for what
    was logged after an answer was sent)."""
    log = target.server.log_text()
    assert "Traceback" not in log and '"level": "ERROR"' not in log, log[-5000:]


# --- Stateful: sequences of calls that feed one answer's values into the next ---------------------

STATEFUL_EXAMPLES = int(os.environ.get("MEMORY_FUZZ_STATEFUL_EXAMPLES", "15"))


def test_stateful_sequences_answer_as_documented(target: Target) -> None:
    """Schemathesis' stateful phase: it infers links between operations from the document (a
    workspace created, then read, given keys, a quota, deleted; a block registered, then its
    memories added, read, listed as conversations, counted, deleted; a tool read, then invoked)
    and runs random sequences of them. Every answer passes the same checks as above, and none
    makes the server log an error."""
    machine = schema.as_state_machine()
    linked = {name for name in dir(machine) if "__" in name and not name.startswith("_")}
    # The links this test relies on, among them the endpoints of this wave (conversations).
    assert {
        "POST_api_memory___200_GetMemory__GET_api_memory",
        "GET_api_memory_conversations___200_GetConversationItem__GET_api_memory_messages",
        "PUT_api_memory_blocks_block_id___200_PostBlock__POST_api_memory",
        "POST_admin_workspaces___201_PostWorkspaceInfo__POST_admin_workspaces_name_keys",
    } <= linked, sorted(linked)

    class Workflow(machine):  # type: ignore[misc,valid-type]
        def before_call(self, case: schemathesis.Case) -> None:
            target.ensure_workspace()

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            headers = ADMIN if case.path.startswith("/admin") else target.auth()
            return {"base_url": target.server.url, "headers": headers}

        def validate_response(
            self, response: object, case: schemathesis.Case, **kwargs: object
        ) -> None:
            case.validate_response(response, checks=CHECKS)  # type: ignore[arg-type]

    Workflow.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=8,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    log = target.server.log_text()
    assert "Traceback" not in log and '"level": "ERROR"' not in log, log[-5000:]
