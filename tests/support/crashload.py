"""Write load that keeps a journal of what the server acknowledged, for the crash tests.

A *lane* is a sequence of writes that only it makes, one at a time, to KV keys and to a memory
(conversation) only it uses: so the state each of them must have after a crash follows from the
lane's journal alone. Before each request a lane journals what it sends; after the answer, the
status. When the server dies, the lane's one request in flight is journaled as unanswered and
the lane stops.

Lanes run as asyncio tasks in worker processes (spawned), each lane journaling to its own file
(flushed after every line: the client processes outlive the server, so the OS has every line).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path


def value_for(key: str, seq: int, size: int) -> bytes:
    """Deterministic bytes for the `seq`-th write of `key`: any tear or mix-up shows."""
    block = hashlib.sha256(f"{key}:{seq}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def content_for(lane: str, seq: int, i: int, size: int) -> str:
    head = f"{lane}:{seq}:{i}:"
    return head + "x" * max(0, size - len(head))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _size(seq: int) -> int:
    # Mostly small values, and every tenth a large one (a write that takes a while to land).
    return 256 * 1024 if seq % 10 == 9 else 100 + (seq * 7919) % 4000


def _batch_sizes(seq: int) -> list[int]:
    # 1 to 5 messages; now and then a large one, so that a batch takes a while to store.
    return [40_000 if (seq + i) % 7 == 0 else 50 + (seq * 31 + i) % 300 for i in range(1 + seq % 5)]


async def _lane(base_url: str, headers: dict, lane: str, journal: Path, deadline: float) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        with journal.open("w") as out:
            await _lane_loop(client, headers, lane, out, deadline)


async def _lane_loop(client, headers: dict, lane: str, out, deadline: float) -> None:  # noqa: ANN001
    import httpx

    def log(**entry: object) -> None:
        out.write(json.dumps(entry) + "\n")
        out.flush()

    live: list[str] = []  # keys this lane has created and not deleted (as far as it knows)
    seq = 0
    while time.time() < deadline:
        seq += 1
        body: bytes | None = None
        if seq % 4 == 3:  # append a batch to the lane's memory
            method, key, sizes = "ADD", lane, _batch_sizes(seq)
            messages = [
                {"role": "user", "content": content_for(lane, seq, i, n)}
                for i, n in enumerate(sizes)
            ]
            payload = {"conversationId": lane, "messages": messages}
            log(seq=seq, key=key, method=method, sizes=sizes)
            request = client.post("/api/memory", json=payload, headers=headers)
        else:
            if seq % 5 == 4 and live:  # overwrite one of our keys
                key, method = live[seq % len(live)], "PUT"
            elif seq % 5 == 0 and live:  # delete one
                key, method = live.pop(0), "DELETE"
            else:
                key, method = f"{lane}-{seq}", "PUT"
            body = value_for(key, seq, _size(seq)) if method == "PUT" else None
            log(
                seq=seq,
                key=key,
                method=method,
                digest=digest(body) if body is not None else None,
            )
            request = client.request(method, f"/api/kv/{key}", content=body, headers=headers)
        try:
            r = await request
        except httpx.HTTPError as exc:
            log(seq=seq, status=0, error=type(exc).__name__)
            return
        is_json = r.headers.get("content-type", "").startswith("application/json")
        log(seq=seq, status=r.status_code, version=(r.json() if is_json else {}).get("version"))
        if r.status_code >= 300:
            return  # unexpected: the test reports it
        if method == "PUT" and key not in live:
            live.append(key)


async def _lanes(base_url: str, headers: dict, names: list[str], dir_: Path, deadline: float):
    await asyncio.gather(
        *(_lane(base_url, headers, name, dir_ / f"{name}.jsonl", deadline) for name in names)
    )


def _worker(base_url: str, headers: dict, names: list[str], dir_: str, deadline: float) -> None:
    asyncio.run(_lanes(base_url, headers, names, Path(dir_), deadline))


@dataclass
class Load:
    """`processes` worker processes x `lanes` lanes each, all writing through `base_url`."""

    base_url: str
    headers: dict[str, str]
    journal_dir: Path
    processes: int = 3
    lanes: int = 6
    max_seconds: float = 60.0
    tag: str = ""  # prefix of the lanes' keys, to keep several loads on one workspace apart
    procs: list = field(default_factory=list)

    def start(self) -> Load:
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        ctx = multiprocessing.get_context("spawn")
        deadline = time.time() + self.max_seconds
        for p in range(self.processes):
            names = [f"{self.tag}p{p}l{i}" for i in range(self.lanes)]
            proc = ctx.Process(
                target=_worker,
                args=(self.base_url, self.headers, names, str(self.journal_dir), deadline),
                daemon=True,
            )
            proc.start()
            self.procs.append(proc)
        return self

    def acknowledged(self) -> int:
        """Writes acknowledged so far (2xx), read from the journals."""
        count = 0
        for path in self.journal_dir.glob("*.jsonl"):
            with path.open() as f:
                count += sum(1 for line in f if '"status": 2' in line)
        return count

    def wait(self, timeout: float = 60) -> None:
        for proc in self.procs:
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                raise AssertionError("a load worker did not stop after the server died")


@dataclass
class KvExpectation:
    """What a key may hold after the crash: one of these (digest, version) states; a digest of
    None means absent, a version of None that the version is unknown (the write was in flight)."""

    key: str
    allowed: list[tuple[str | None, int | None]]


@dataclass
class MemoryExpectation:
    """A lane's memory after the crash: exactly `acked` (message contents, in order), or that
    followed by the whole of `pending` (the batch in flight), never a part of it."""

    conversation: str
    acked: list[str]
    pending: list[str] | None


@dataclass
class Journal:
    kv: list[KvExpectation]
    memories: list[MemoryExpectation]
    problems: list[str]  # answers that were neither 2xx nor "no answer"
    acked: int


def read_journals(journal_dir: Path) -> Journal:
    out = Journal([], [], [], 0)
    for path in sorted(journal_dir.glob("*.jsonl")):
        lane = path.stem
        sent: dict[int, dict] = {}
        order: list[int] = []
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if "method" in entry:
                sent[entry["seq"]] = entry
                order.append(entry["seq"])
            else:
                sent[entry["seq"]].update(status=entry["status"], version=entry.get("version"))
        # Per key: the state after its last acknowledged write, and (if the lane's last request
        # got no answer and touched this key) the state that request would have left.
        state: dict[str, tuple[str | None, int | None]] = {}
        pending: dict[str, tuple[str | None, int | None]] = {}
        memory = MemoryExpectation(lane, [], None)
        for seq in order:
            op = sent[seq]
            status = op.get("status")
            done = status is not None and 200 <= status < 300
            in_flight = status in (None, 0)
            if not (done or in_flight):
                out.problems.append(
                    f"{path.name} seq {seq}: {op['method']} {op['key']} -> {status}"
                )
                continue
            out.acked += done
            if op["method"] == "ADD":
                batch = [content_for(lane, seq, i, n) for i, n in enumerate(op["sizes"])]
                if done:
                    memory.acked += batch
                else:
                    memory.pending = batch
                continue
            new = (op["digest"], op.get("version")) if op["method"] == "PUT" else (None, None)
            if done:
                state[op["key"]] = new
            else:
                pending[op["key"]] = new
        for key in set(state) | set(pending):
            allowed = [state.get(key, (None, None))]
            if key in pending:
                allowed.append(pending[key])
            out.kv.append(KvExpectation(key, allowed))
        out.memories.append(memory)
    return out
