"""The bar memory-service is measured against: the least a Litestar app can do per request.

`POST /rows` stores its raw body (the benchmark sends 1 KiB) as one row in SQLite through
aiosqlite: one connection opened at startup, WAL, synchronous=NORMAL, and autocommit, so every
request is its own committed transaction, as every acknowledged write of the service must be.
`GET /hello` answers a small JSON without touching the database. `GET /messages?conv=` reads the
last 20 of a conversation's messages (1,000 conversations of 20, seeded at start with the same
texts as the service's small memories in memory_bench.py) and answers them as JSON: the bar for
the service's read of the last 20 messages of a memory.

It is served exactly like the service: uvicorn, uvloop, httptools, no access log, one worker.

    python bench/baseline_app.py --port 8001 --db /tmp/baseline.db
"""

from __future__ import annotations

import argparse

import aiosqlite
import memory_bench
from litestar import Litestar, Request, get, post


@get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


@post("/rows")
async def insert_row(request: Request) -> dict[str, int | None]:
    db: aiosqlite.Connection = request.app.state.db
    cursor = await db.execute("INSERT INTO rows (data) VALUES (?)", (await request.body(),))
    return {"id": cursor.lastrowid}


@get("/messages")
async def last_messages(request: Request, conv: str) -> list[dict[str, object]]:
    db: aiosqlite.Connection = request.app.state.db
    cursor = await db.execute(
        "SELECT seq, role, content FROM messages WHERE conv = ? ORDER BY seq DESC LIMIT 20",
        (conv,),
    )
    rows = await cursor.fetchall()
    return [{"role": role, "content": content, "seq": seq} for seq, role, content in rows[::-1]]


async def seed_messages(db: aiosqlite.Connection) -> None:
    await db.execute(
        "CREATE TABLE IF NOT EXISTS messages (conv TEXT NOT NULL, seq INTEGER NOT NULL,"
        " role TEXT NOT NULL, content TEXT NOT NULL, PRIMARY KEY (conv, seq))"
    )
    if (await (await db.execute("SELECT count(*) FROM messages")).fetchone())[0]:
        return
    rows = [
        (f"{memory_bench.SMALL}{n}", i, m["role"], m["content"])
        for n in range(memory_bench.SMALL_MEMORIES)
        for i, m in enumerate(memory_bench.batch(20))
    ]
    await db.execute("BEGIN")
    await db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?)", rows)
    await db.execute("COMMIT")


def create_app(db_path: str) -> Litestar:
    async def open_db(app: Litestar) -> None:
        db = await aiosqlite.connect(db_path, isolation_level=None)  # autocommit
        mode = (await (await db.execute("PRAGMA journal_mode=WAL")).fetchone())[0]
        if mode != "wal":
            raise RuntimeError(f"SQLite refused WAL mode (got {mode!r})")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA busy_timeout=10000")
        await db.execute(
            "CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, data BLOB NOT NULL)"
        )
        await seed_messages(db)
        app.state.db = db

    async def close_db(app: Litestar) -> None:
        await app.state.db.close()

    return Litestar(
        [hello, insert_row, last_messages], on_startup=[open_db], on_shutdown=[close_db]
    )


def serve(app: Litestar, host: str, port: int) -> None:
    """The service's server stack (uvicorn, uvloop, httptools, one worker), no access log."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        workers=1,
        log_level="warning",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--db", required=True, help="SQLite file (created if missing)")
    args = parser.parse_args()
    serve(create_app(args.db), args.host, args.port)


if __name__ == "__main__":
    main()
