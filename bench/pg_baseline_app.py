"""The PostgreSQL bar: the least a Litestar app can do per insert into PostgreSQL.

`POST /rows` stores its raw body (the benchmark sends 1 KiB) as one row through an asyncpg pool
(as many connections as the service's default pool, 10), each insert its own committed
transaction (autocommit: one round trip, the statement prepared once per connection), as every
acknowledged write of the service must be. `GET /hello` answers a small JSON.

Served exactly like the service: uvicorn, uvloop, httptools, no access log, one worker.

    python bench/pg_baseline_app.py --port 8002 --dsn postgresql://postgres@127.0.0.1:5432/db
"""

from __future__ import annotations

import argparse

import asyncpg
from baseline_app import hello, serve
from litestar import Litestar, Request, post

POOL_SIZE = 10  # the service's default MEMORY_PG_POOL_SIZE


@post("/rows")
async def insert_row(request: Request) -> dict[str, int]:
    pool: asyncpg.Pool = request.app.state.pool
    row_id = await pool.fetchval(
        "INSERT INTO rows (data) VALUES ($1) RETURNING id", await request.body()
    )
    return {"id": row_id}


def create_app(dsn: str) -> Litestar:
    async def open_pool(app: Litestar) -> None:
        pool = await asyncpg.create_pool(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE)
        await pool.execute("CREATE TABLE IF NOT EXISTS rows (id bigserial PRIMARY KEY, data bytea)")
        app.state.pool = pool

    async def close_pool(app: Litestar) -> None:
        await app.state.pool.close()

    return Litestar([hello, insert_row], on_startup=[open_pool], on_shutdown=[close_pool])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--dsn", required=True, help="postgresql://user@host:port/database")
    args = parser.parse_args()
    serve(create_app(args.dsn), args.host, args.port)


if __name__ == "__main__":
    main()
