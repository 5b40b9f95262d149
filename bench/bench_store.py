"""Benchmark: the money path (reserve then settle) on SQLite and PostgreSQL, 1 and 2 processes.

Every job is a different user in one of ten group chats with the global USD cap on, so the only
row all jobs contend for is the day's spend counter: the worst case for many processes, since a
reserve holds that row's lock until it commits. Each process is a real child process with its own
store and event loop, running ``--concurrency`` jobs at once.

Run: ``.venv/bin/python bench/bench_store.py [--quick] [--pg-url URL]``. Prints figures; asserts
nothing. PostgreSQL: a database made for the run and dropped after (default: the local server as
the tests use it, ``IMAGINE_TEST_PG_URL``). Default 2000 jobs per configuration; ``--quick`` 400.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import QuotaSection
from bot.domain import Actor, ChatRef
from bot.quotas import Price, Quotas
from bot.storage.postgres import PostgresStore
from bot.storage.sqlite import SqliteStore
from tests.store_engines import admin, with_database

SECTION = QuotaSection(user_daily_credits=100, chat_daily_credits=1_000_000,
                       global_daily_usd=1_000_000.0)


async def worker(engine: str, where: str, jobs: int, concurrency: int, tag: str) -> dict[str, float]:
    """One process's share: ``jobs`` reserve+settle cycles, ``concurrency`` at a time."""
    store = (SqliteStore(Path(where)) if engine == "sqlite"
             else PostgresStore(where, pool_size=concurrency))
    await store.open()
    quotas = Quotas(store, SECTION, owner=tag)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            res = await quotas.reserve(Actor("telegram", f"{tag}{i}"),
                                       ChatRef("telegram", f"-{i % 10}", "group"), Price(1, 0.01))
            latencies.append(time.perf_counter() - started)
            await quotas.settle(res.id)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(jobs)))
    elapsed = time.perf_counter() - started
    await store.close()
    latencies.sort()
    return {"elapsed": elapsed, "p50": statistics.median(latencies),
            "p99": latencies[int(len(latencies) * 0.99) - 1]}


async def run(engine: str, where: str, processes: int, jobs: int, concurrency: int) -> str:
    """Start ``processes`` workers at once; the aggregate throughput and latencies."""
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--worker", engine, where, str(jobs // processes),
        str(concurrency), f"{processes}p{i}x", stdout=asyncio.subprocess.PIPE)
        for i in range(processes)]
    outs = [json.loads((await p.communicate())[0]) for p in procs]
    wall = max(o["elapsed"] for o in outs)
    return (f"{engine:8s} {processes} process(es) x {concurrency:2d} at once: "
            f"{jobs / wall:7.0f} jobs/s (reserve+settle), reserve p50 "
            f"{1000 * statistics.median(o['p50'] for o in outs):5.1f} ms, p99 "
            f"{1000 * max(o['p99'] for o in outs):6.1f} ms")


async def main(args: argparse.Namespace) -> None:
    jobs = 400 if args.quick else 2000
    name = f"imagine_bench_{secrets.token_hex(4)}"
    await admin(args.pg_url, f'CREATE DATABASE "{name}"')
    url = with_database(args.pg_url, name)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = str(Path(tmp) / "bench.sqlite3")
            for engine, where in (("sqlite", db), ("postgres", url)):
                first = SqliteStore(Path(db)) if engine == "sqlite" else PostgresStore(url)
                await first.open()  # migrations once, before the workers race
                await first.close()
                for processes in (1, 2):
                    for concurrency in (1, 8):
                        print(await run(engine, where, processes, jobs, concurrency), flush=True)
    finally:
        await admin(args.pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        engine, where, n, c, tag = sys.argv[2:7]
        print(json.dumps(asyncio.run(worker(engine, where, int(n), int(c), tag))))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pg-url", default=os.environ.get(
        "IMAGINE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    asyncio.run(main(parser.parse_args()))
