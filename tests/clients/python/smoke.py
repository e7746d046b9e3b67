"""Smoke program of the Python client that openapi-python-client generates from openapi.yaml,
run by tests/test_generated_clients.py against a live server (MEMORY_URL, MEMORY_KEY, and a RUN
id that keeps this run's names apart). Raises AssertionError at the first failed check.

The server runs with MEMORY_MAX_MESSAGE_PAGE=3, so a memory of five messages has older ones to
page back to through `dataCursor`.
"""

from __future__ import annotations

import io
import os

from memory_service_client import AuthenticatedClient
from memory_service_client.api.kv import kv_delete, kv_exists, kv_get, kv_list, kv_set
from memory_service_client.api.memory import (
    memory_add,
    memory_delete,
    memory_get,
    memory_get_all,
    memory_messages,
)
from memory_service_client.models import (
    Failure,
    KvList,
    KvWritten,
    MemoryAddBody,
    MemoryAddBodyRole,
    MemoryAdded,
    MemoryDeleted,
    MemoryList,
    MemoryMessageIn,
    MemoryMessageInRole,
    MemoryMessages,
)
from memory_service_client.types import File

client = AuthenticatedClient(base_url=os.environ["MEMORY_URL"], token=os.environ["MEMORY_KEY"])
run = os.environ["RUN"]
conv = f"conv-{run}"


def ok(answer: object, kind: type) -> object:
    """The answer, checked to be the success shape `kind` (a Failure says why not)."""
    assert isinstance(answer, kind), answer
    assert answer.success is True and answer.message, answer
    return answer


# --- memory add: one message, a batch with an Idempotency-Key, its retry ------------------------
one = MemoryAddBody(
    conversation_id=conv,
    block_id="notes",
    block_name=f"Notes {run}",
    role=MemoryAddBodyRole.SYSTEM,
    content="be brief",
)
added = ok(memory_add.sync(client=client, body=one), MemoryAdded)
assert added.replayed is False and added.memories[0].message_count == 1
assert added.memories[0].data[0].seq == 0 and added.memories[0].block_name == f"Notes {run}"

batch = MemoryAddBody(
    conversation_id=conv,
    block_id="notes",
    messages=[
        MemoryMessageIn(role=MemoryMessageInRole(r), content=c)
        for r, c in [("user", "hello"), ("assistant", "hi"), ("user", "how?"), ("assistant", "ok")]
    ],
)
first = ok(memory_add.sync(client=client, body=batch, idempotency_key=f"b-{run}"), MemoryAdded)
assert [m.seq for m in first.memories[0].data] == [1, 2, 3, 4] and first.replayed is False
retry = ok(memory_add.sync(client=client, body=batch, idempotency_key=f"b-{run}"), MemoryAdded)
assert retry.replayed is True and retry.memories[0].message_count == 5, retry

body = MemoryAddBody(conversation_id=conv, role=MemoryAddBodyRole.USER, content="other block")
ok(memory_add.sync(client=client, body=body), MemoryAdded)
body = MemoryAddBody(
    conversation_id=f"{conv}-b", block_id="notes", role=MemoryAddBodyRole.USER, content="x"
)
ok(memory_add.sync(client=client, body=body), MemoryAdded)

# --- get with each filter, a combination, a window ---------------------------------------------
by_conv = ok(memory_get.sync(client=client, conversation_id=conv), MemoryList)
assert sorted(m.block_id for m in by_conv.memories) == ["default", "notes"], by_conv
assert by_conv.next_cursor is None

by_block = ok(memory_get.sync(client=client, block_id="notes"), MemoryList)
ours = sorted(m.conversation_id for m in by_block.memories if m.conversation_id.startswith(conv))
assert ours == [conv, f"{conv}-b"], by_block

by_name = ok(memory_get.sync(client=client, block_name=f"Notes {run}"), MemoryList)
assert len(by_name.memories) == 2 and {m.block_name for m in by_name.memories} == {f"Notes {run}"}

both = ok(memory_get.sync(client=client, conversation_id=conv, block_id="notes"), MemoryList)
(memory,) = both.memories
assert [m.content for m in memory.data] == ["hi", "how?", "ok"], memory  # the newest page of 3
assert memory.message_count == 5 and isinstance(memory.data_cursor, str), memory
assert memory.created_at.tzinfo is not None and memory.updated_at >= memory.created_at

# Older messages, through dataCursor.
older = ok(
    memory_messages.sync(
        client=client, conversation_id=conv, block_id="notes", cursor=memory.data_cursor
    ),
    MemoryMessages,
)
assert [m.seq for m in older.data] == [0, 1] and older.next_cursor is None, older

window = ok(
    memory_get.sync(
        client=client, conversation_id=conv, block_id="notes", last_n=1, keep_system=True
    ),
    MemoryList,
)
assert [m.role for m in window.memories[0].data] == ["system", "assistant"], window

# --- getAll, paged ------------------------------------------------------------------------------
seen: list[str] = []
cursor = None
for _ in range(100):
    kwargs = {"cursor": cursor} if cursor else {}
    page = ok(memory_get_all.sync(client=client, limit=1, **kwargs), MemoryList)
    assert len(page.memories) <= 1
    seen += [m.key for m in page.memories]
    if page.next_cursor is None:
        break
    cursor = page.next_cursor
assert {f"{conv}:default", f"{conv}:notes", f"{conv}-b:notes"} <= set(seen), seen
assert len(seen) == len(set(seen))

# --- delete: dryRun, then for real ---------------------------------------------------------------
dry = ok(memory_delete.sync(client=client, conversation_id=conv, dry_run=True), MemoryDeleted)
assert dry.dry_run is True and dry.deleted_count == 2, dry
assert len(ok(memory_get.sync(client=client, conversation_id=conv), MemoryList).memories) == 2
real = ok(memory_delete.sync(client=client, conversation_id=conv), MemoryDeleted)
assert real.dry_run is False and real.deleted_count == 2 and real.freed_bytes > 0, real
gone = ok(memory_get.sync(client=client, conversation_id=conv), MemoryList)
assert gone.memories == [] and gone.message == "No memories found"

# --- KV ------------------------------------------------------------------------------------------
key = f"py/{run}/greeting"
value = "hello, wörld".encode()
written = kv_set.sync_detailed(
    key,
    client=client,
    body=File(payload=io.BytesIO(value)),
    content_type="text/plain; charset=utf-8",
)
assert written.status_code == 201, written
created = ok(written.parsed, KvWritten)
# An entry's size counts its key and its value (what the quota charges).
assert created.created is True and created.size == len(key.encode()) + len(value), created
assert written.headers["ETag"] == created.etag

got = kv_get.sync_detailed(key, client=client)
assert got.status_code == 200 and isinstance(got.parsed, File), got
assert got.parsed.payload.read() == value  # byte for byte
assert got.headers["Content-Type"] == "text/plain; charset=utf-8"
assert got.headers["ETag"] == created.etag

present = kv_exists.sync_detailed(key, client=client)
assert present.status_code == 200 and present.headers["X-Value-Length"] == str(len(value))
assert kv_exists.sync_detailed(f"{key}-absent", client=client).status_code == 404

# Conditional set: on the current version it works; stale, or If-None-Match: * on a present key,
# it is a 412 that changes nothing.
nxt = kv_set.sync(key, client=client, body=File(payload=io.BytesIO(b"v2")), if_match=created.etag)
assert ok(nxt, KvWritten).version == created.version + 1
stale = kv_set.sync_detailed(
    key, client=client, body=File(payload=io.BytesIO(b"v3")), if_match=created.etag
)
assert stale.status_code == 412 and isinstance(stale.parsed, Failure), stale
assert stale.parsed.code == "precondition_failed"
absent_only = kv_set.sync_detailed(
    key, client=client, body=File(payload=io.BytesIO(b"v4")), if_none_match="*"
)
assert absent_only.status_code == 412, absent_only
assert kv_get.sync(key, client=client).payload.read() == b"v2"

for name in "abc":
    kv_set.sync(f"py/{run}/list/{name}", client=client, body=File(payload=io.BytesIO(b"x")))
listed: list[str] = []
cursor = None
for _ in range(10):
    kwargs = {"cursor": cursor} if cursor else {}
    page = ok(kv_list.sync(client=client, prefix=f"py/{run}/list/", limit=2, **kwargs), KvList)
    assert len(page.items) <= 2
    listed += [item.key for item in page.items]
    if page.next_cursor is None:
        break
    cursor = page.next_cursor
assert listed == [f"py/{run}/list/{n}" for n in "abc"], listed

deleted = kv_delete.sync(key, client=client)
assert deleted.success is True and deleted.deleted is True, deleted
assert kv_exists.sync_detailed(key, client=client).status_code == 404

# --- an error, narrowed by `success` --------------------------------------------------------------
answer = memory_get.sync(client=client)  # no filter: a 400
assert answer is not None
if answer.success:
    raise AssertionError(f"a request without a filter succeeded: {answer}")
assert isinstance(answer, Failure) and answer.code == "missing_filter"
assert answer.error and answer.message
print(f"{answer.code}: {answer.message}")
print("python smoke: ok")
