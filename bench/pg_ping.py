"""What SQLAlchemy's `pool_pre_ping` would cost a PostgreSQL store: `uv run python -m bench.pg_ping`.

A trivial write (`Store.write`, one `SELECT 1` in its transaction) timed `--n` times on a fresh database, with the
pool's pre-ping off and on, alternating `--rounds` times; p50 and mean in milliseconds. The store does not ping
(it runs a transaction again when its pooled connection turns out dead, `Store._commit_pg`): this measures why.
Needs PostgreSQL (`--url`, a server where the user may create databases; default as the tests').
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import asyncpg
import sqlalchemy as sa

from resolvers.store import Store


async def run(url: str, n: int, rounds: int) -> None:
    name = "cg_bench_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    database = sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    try:
        for _ in range(rounds):
            for ping in (False, True):
                store = Store(database)
                store.engine.pool._pre_ping = ping  # type: ignore[attr-defined]
                await store.open()
                for _ in range(200):  # warm-up
                    await store.write(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())
                times = []
                for _ in range(n):
                    started = time.perf_counter()
                    await store.write(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())
                    times.append(time.perf_counter() - started)
                await store.close()
                median, mean = statistics.median(times) * 1e3, statistics.fmean(times) * 1e3
                print(f"pre_ping={ping!s:5}: write p50 {median:.3f} ms, mean {mean:.3f} ms")
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_ping", description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--n", type=int, default=2000, help="writes per round and setting")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(run(args.url, args.n, args.rounds))


if __name__ == "__main__":
    main()
