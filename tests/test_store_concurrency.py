"""Several processes on one store, on both engines: concurrent reserves never overspend a window,
leases decide whose reservations may be refunded, and a dead instance's are refunded exactly once.

Two store objects on one database stand for two processes (each has its own connections; on
PostgreSQL they meet only in the server's row locks). A child process that is killed stands for
a crash.
"""

from __future__ import annotations

import asyncio
import random
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from bot.config import QuotaSection
from bot.domain import Actor, ChatRef, MessageRef, Turn
from bot.errors import QuotaExceeded, StoreUnavailable
from bot.instance import Instance
from bot.quotas import Price, Quotas
from bot.storage.postgres import PostgresStore
from bot.storage.sqlite import SqliteStore
from tests.conftest import StoreFactory
from tests.store_engines import AnyStore, execute, fetch, read_only

ROOT = Path(__file__).resolve().parent.parent
GROUPS = [ChatRef("telegram", "-100", "group"), ChatRef("discord", "g1", "group")]
USERS = [Actor("telegram", str(i)) for i in range(20)]


async def expire(store: AnyStore, instance_id: str) -> None:
    """Make an instance's lease lapse (a process that stopped renewing a while ago)."""
    if isinstance(store, SqliteStore):
        past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat(timespec="microseconds")
        await execute(store, "UPDATE instances SET lease_until = ? WHERE id = ?", past, instance_id)
    else:
        await execute(store, "UPDATE instances SET lease_until = now() - interval '5 seconds'"
                             " WHERE id = ?", instance_id)


async def refund_rows(store: AnyStore) -> Counter[str]:
    """How many refund rows each reservation has."""
    rows = await fetch(store, "SELECT reservation_id FROM ledger WHERE kind = 'refund'")
    return Counter(r[0] for r in rows)


# ----- reserves from two processes -------------------------------------------------------------


async def test_many_reserves_from_two_processes_never_overspend(
        two: tuple[AnyStore, AnyStore]) -> None:
    """300 reserves at once through two stores (four quota owners) against user, chat and global
    windows: the global cap (60 jobs) is met exactly and no window goes over."""
    section = QuotaSection(user_daily_credits=5, user_monthly_credits=100, chat_daily_credits=40,
                           global_daily_usd=0.6)
    quotas = [Quotas(s, section, owner=f"{i}{j}") for i, s in enumerate(two) for j in range(2)]
    jobs = [quotas[i % 4].reserve(USERS[i % 20], GROUPS[i % 2], Price(1, 0.01)) for i in range(300)]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    granted = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, QuotaExceeded)]
    assert errors == []  # no deadlock, serialization failure or timeout: only refusals
    assert len(granted) == 60
    per_user = Counter(r.actor_key for r in granted)
    per_chat = Counter(r.chat_key for r in granted)
    assert max(per_user.values()) <= 5 and max(per_chat.values()) <= 40
    usage = await quotas[3].usage(USERS[0], GROUPS[0])
    assert usage.window("global_daily_usd").used == pytest.approx(0.6)  # type: ignore[union-attr]
    assert await two[0].integrity_ok() and await two[1].integrity_ok()


async def test_reserves_refunds_and_grants_interleaved_keep_the_books(
        two: tuple[AnyStore, AnyStore]) -> None:
    """Reserve, refund, settle and take-back grants at once from two processes: nothing fails but
    refusals, no window is over, bonus never goes below zero, and every row is counted."""
    section = QuotaSection(user_daily_credits=3, user_monthly_credits=100, chat_daily_credits=25,
                           global_daily_usd=0.5)
    quotas = [Quotas(s, section, owner=f"p{i}") for i, s in enumerate(two)]
    rng = random.Random(14)
    users = USERS[:6]
    for u in users:
        await quotas[0].grant(u.key, 4)

    async def one(i: int) -> None:
        q = quotas[i % 2]
        user = users[rng.randrange(len(users))]
        if i % 7 == 3:
            await q.grant(user.key, -3)
            return
        try:
            res = await q.reserve(user, GROUPS[rng.randrange(2)], Price(2, 0.02))
        except QuotaExceeded:
            return
        await asyncio.sleep(rng.random() / 100)
        await (q.settle(res.id) if i % 3 == 0 else quotas[(i + 1) % 2].refund(res.id, "test"))

    await asyncio.gather(*(one(i) for i in range(240)))
    async with two[0].quota_tx() as tx:
        for u in users:
            assert await tx.bonus(u.key) >= 0
            day = quotas[0].today()
            assert await tx.used_credits(u.key, day=day) <= 3
    assert await two[0].held_reservations() == []
    assert set((await refund_rows(two[0])).values()) <= {1}
    assert await two[1].integrity_ok()


# ----- leases --------------------------------------------------------------------------------------


async def test_a_dead_instance_is_refunded_exactly_once_by_two_sweepers(
        two: tuple[AnyStore, AnyStore]) -> None:
    a, b = two
    section = QuotaSection(user_daily_credits=100, global_daily_usd=0)
    await a.register_instance("dead", 60)
    dead = Quotas(a, section, owner="dead")
    held = [await dead.reserve(USERS[i], GROUPS[i % 2], Price(3, 0.03)) for i in range(12)]
    await expire(a, "dead")
    sweepers = [Quotas(s, section, owner=f"s{i}") for i, s in enumerate(two)]
    counts = await asyncio.gather(*(q.refund_stale() for q in sweepers * 3))
    assert sum(counts) == 12
    refunds = await refund_rows(b)
    assert refunds == Counter({r.id: 1 for r in held})
    assert await a.held_reservations() == []
    usage = await sweepers[0].usage(USERS[0])
    assert usage.reserved == 0 and usage.window("user_daily").used == 0  # type: ignore[union-attr]


async def test_a_dead_instances_delivered_result_is_settled_not_refunded(
        two: tuple[AnyStore, AnyStore]) -> None:
    """Issue 14.2: an orphan whose delivery was recorded is a sale; the rest are refunded."""
    a, b = two
    section = QuotaSection(user_daily_credits=100, global_daily_usd=0)
    await a.register_instance("dead", 60)
    dead = Quotas(a, section, owner="dead")
    both = [await dead.reserve(USERS[5], None, Price(4, 0.04)) for _ in range(2)]
    for n, held in enumerate(both):
        turn = Turn(id=f"turn{n}", actor_key=USERS[5].key, chat_key="telegram:5", prompt="p",
                    model="m", size="1K", aspect="1:1", parent_id=None, input_hashes=(),
                    output_hashes=(), provider_state=None, created_at=datetime.now(UTC),
                    kind="imagine", credits=4)
        await a.add_result([], datetime.now(UTC), turn, held.id)
    await a.bind("turn0", [MessageRef("telegram", "5", "77")])  # delivered, then the crash
    await expire(a, "dead")
    assert await Quotas(b, section, owner="sweeper").refund_stale() == 1
    kinds = [(e.kind, e.reservation_id) for e in await b.ledger(USERS[5].key)]
    ids = {e.reservation_id for e in await b.ledger(USERS[5].key)}
    assert sorted(k for k, _ in kinds) == ["refund", "reserve", "reserve", "settle"]
    assert len(ids) == 2 and await b.held_reservations() == []
    assert (await Quotas(b, section).usage(USERS[5])).window("user_daily").used == 4  # type: ignore[union-attr]


async def test_a_live_instance_keeps_its_reservations(two: tuple[AnyStore, AnyStore]) -> None:
    a, b = two
    section = QuotaSection(user_daily_credits=10)
    await a.register_instance("live", 60)
    mine = await Quotas(a, section, owner="live").reserve(USERS[1], None, Price(2, 0.02))
    other = Quotas(b, section, owner="other")
    assert await b.orphaned_reservations() == []
    assert await other.refund_stale() == 0
    assert [r.id for r in await b.held_reservations()] == [mine.id]
    assert await a.renew_instance("live", 60) is True
    await a.retire_instance("live")  # a clean stop that left a job held: now an orphan
    assert [r.id for r in await b.orphaned_reservations()] == [mine.id]
    assert await other.refund_stale() == 1


async def test_reservations_without_a_known_owner_are_orphans(
        two: tuple[AnyStore, AnyStore]) -> None:
    a, b = two
    section = QuotaSection(user_daily_credits=10)
    legacy = await Quotas(a, section).reserve(USERS[2], None, Price(1, 0.01))  # before owners
    stranger = await Quotas(a, section, owner="never-registered").reserve(USERS[3], None,
                                                                          Price(1, 0.01))
    assert legacy.owner is None and stranger.owner == "never-registered"
    assert {r.id for r in await b.orphaned_reservations()} == {legacy.id, stranger.id}


async def test_a_process_never_refunds_its_own_jobs(two: tuple[AnyStore, AnyStore]) -> None:
    """Even when its own lease is missing (it could not take one yet), a sweep skips its jobs."""
    a, b = two
    section = QuotaSection(user_daily_credits=10)
    mine = Quotas(a, section, owner="self")
    res = await mine.reserve(USERS[6], None, Price(1, 0.01))
    assert await mine.refund_stale() == 0
    assert await Quotas(b, section, owner="other").refund_stale() == 1
    assert await mine.settle(res.id) is False  # refunded by the other: the job ran for free


async def test_an_instance_starts_degraded_on_a_read_only_database(store: AnyStore) -> None:
    quotas = Quotas(store, QuotaSection(), owner="ro")
    instance = Instance(store, quotas, instance_id="ro", lease_seconds=30)
    async with read_only(store):
        assert await instance.start() == 0  # no lease yet, no crash: readiness tells
        await instance.stop()


async def test_a_lapsed_lease_is_taken_again_and_says_so(two: tuple[AnyStore, AnyStore]) -> None:
    a, _ = two
    await a.register_instance("slow", 60)
    await expire(a, "slow")
    assert await a.renew_instance("slow", 60) is False  # others may have refunded its jobs
    assert await a.renew_instance("slow", 60) is True
    await a.retire_instance("slow")
    assert await a.renew_instance("slow", 60) is False  # forgotten: registered again


async def test_instance_start_heartbeat_and_stop(two: tuple[AnyStore, AnyStore]) -> None:
    a, b = two
    section = QuotaSection(user_daily_credits=10)
    orphan = await Quotas(a, section).reserve(USERS[4], None, Price(1, 0.01))
    quotas = Quotas(a, section, owner="beat")
    instance = Instance(a, quotas, instance_id="beat", lease_seconds=0.3)
    assert await instance.start() == 1  # what a dead one held is refunded at start
    assert (await b.orphaned_reservations()) == []
    job = await quotas.reserve(USERS[5], None, Price(1, 0.01))
    await asyncio.sleep(0.8)  # several leases long: only the heartbeat keeps it alive
    assert await b.orphaned_reservations() == []
    await instance.stop()
    assert [r.id for r in await b.orphaned_reservations()] == [job.id]
    assert orphan.id in await refund_rows(b)


CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from bot.config import QuotaSection
    from bot.domain import Actor
    from bot.quotas import Price, Quotas
    from bot.storage.postgres import PostgresStore
    from bot.storage.sqlite import SqliteStore

    async def main() -> None:
        if sys.argv[1] == "sqlite":
            store = SqliteStore(Path(sys.argv[2]))
        else:
            store = PostgresStore(sys.argv[2], schema=sys.argv[3])
        await store.open()
        await store.register_instance("child", 600)
        quotas = Quotas(store, QuotaSection(user_daily_credits=10), owner="child")
        res = await quotas.reserve(Actor("telegram", "7"), None, Price(4, 0.04))
        print(res.id, flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
""")


async def test_a_killed_process_with_a_running_lease(store_factory: StoreFactory) -> None:
    """SQLite (one host) sees at once that the holder died (its lock file is free); PostgreSQL
    (many hosts) waits for the lease to lapse, then refunds."""
    store = store_factory()
    args = (["sqlite", str(store.path)] if isinstance(store, SqliteStore)
            else ["postgres", store._url, store._schema or ""])
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        assert line.strip(), (await proc.stderr.read()).decode()
    finally:
        proc.kill()
        await proc.wait()
    await store.open()
    try:
        sweeper = Quotas(store, QuotaSection(user_daily_credits=10), owner="next")
        if isinstance(store, SqliteStore):
            assert await sweeper.refund_stale() == 1
        else:
            assert await sweeper.refund_stale() == 0  # its lease still runs
            await expire(store, "child")
            assert await sweeper.refund_stale() == 1
        assert await store.held_reservations() == []
    finally:
        await store.close()


async def test_a_frozen_holder_of_the_spend_row_does_not_stall_everyone(
        pg_database: str, pg_schema: str) -> None:
    """A process stopped inside its transaction: others fail fast (then succeed), not hang."""
    store = PostgresStore(pg_database, schema=pg_schema, stall_timeout=0.5)
    await store.open()
    frozen = await asyncpg.connect(pg_database, server_settings={"search_path": pg_schema})
    try:
        quotas = Quotas(store, QuotaSection(global_daily_usd=5.0), owner="live")
        day = quotas.today()
        await quotas.reserve(USERS[7], None, Price(1, 0.01))  # the spend row exists
        tx = frozen.transaction()
        await tx.start()
        await frozen.execute("SELECT * FROM counters WHERE scope = 'usd_day' AND period = $1"
                             " FOR UPDATE", day)
        started = asyncio.get_running_loop().time()
        with pytest.raises(StoreUnavailable):
            await quotas.reserve(USERS[8], None, Price(1, 0.01))
        assert asyncio.get_running_loop().time() - started < 5
        await tx.rollback()
        await quotas.reserve(USERS[8], None, Price(1, 0.01))  # free again
    finally:
        await frozen.close()
        await store.close()
