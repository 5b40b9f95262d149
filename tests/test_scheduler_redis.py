"""The Redis scheduler against the real server: several schedulers on one prefix are several
processes. Limits, round-robin order, positions and refusals hold across them exactly as the
in-process scheduler keeps them in one; a process whose lease lapsed is swept exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bot.domain import Progress
from bot.errors import Cancelled, QueueFull, TooManyWaiting
from bot.jobs import JobScheduler
from bot.scheduler_redis import RedisScheduler
from tests.redis_service import client, redis_prefix
from tests.test_jobs import Gates

Factory = Callable[..., Awaitable[RedisScheduler]]


@pytest.fixture
async def processes() -> AsyncIterator[Factory]:
    """Make opened schedulers ("processes") on one fresh prefix; closed after the test."""
    made: list[RedisScheduler] = []
    async with redis_prefix() as prefix:
        async def make(name: str, **limits: Any) -> RedisScheduler:
            limits.setdefault("global_concurrency", 2)
            scheduler = RedisScheduler(client(), process=name, prefix=prefix, **limits)
            await scheduler.open()
            made.append(scheduler)
            return scheduler

        yield make
        for scheduler in made:
            await scheduler.drain(0)
            await scheduler.aclose()


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Poll ``check`` until true."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 (a condition over several objects, no one event)
            await asyncio.sleep(0.01)


async def test_limits_hold_across_processes(processes: Factory) -> None:
    gates = Gates()
    a = await processes("a", global_concurrency=3, per_user_queued=5, queue_size=50)
    b = await processes("b", global_concurrency=3, per_user_queued=5, queue_size=50)
    runs = [asyncio.create_task((a if i % 2 else b).run(f"user{i % 4}", gates.work(f"j{i}"),
                                                       timeout=30)) for i in range(16)]
    await until(lambda: len(gates.started) == 3)
    await asyncio.sleep(0.1)
    assert gates.running == 3  # the global limit, though each process alone would start more
    for i in range(16):
        gates.release(f"j{i}")
    results = await asyncio.gather(*runs)
    assert sorted(results) == sorted(f"result-j{i}" for i in range(16))
    assert gates.peak == 3
    await until(lambda: a.snapshot().running == 0 and a.snapshot().queued == 0)


async def test_round_robin_order_matches_the_in_process_scheduler(processes: Factory) -> None:
    script = [("a", "alice", "a1"), ("b", "alice", "a2"), ("a", "alice", "a3"),
              ("b", "bob", "b1"), ("a", "carol", "c1"), ("b", "bob", "b2")]

    async def order(pick: Callable[[str], Any]) -> list[str]:
        gates = Gates()
        runs = []
        for where, owner, name in script:
            runs.append(asyncio.create_task(pick(where).run(owner, gates.work(name), timeout=30)))
            await asyncio.sleep(0.05)  # submission order is the script's
        for _ in script:
            await until(lambda: gates.running == 1)
            gates.release(gates.started[-1])
            await asyncio.sleep(0.05)
        await asyncio.gather(*runs)
        return gates.started

    local = JobScheduler(global_concurrency=1, per_user_queued=3)
    a = await processes("a", global_concurrency=1, per_user_queued=3)
    b = await processes("b", global_concurrency=1, per_user_queued=3)
    expected = await order(lambda where: local)
    assert expected == ["a1", "a2", "b1", "c1", "a3", "b2"]
    assert await order(lambda where: a if where == "a" else b) == expected


async def test_positions_are_true_across_processes(processes: Factory) -> None:
    gates = Gates()
    a = await processes("a", global_concurrency=1, per_user_queued=2)
    b = await processes("b", global_concurrency=1, per_user_queued=2)
    seen: dict[str, list[int | None]] = {}

    def progress(name: str) -> Callable[[Progress], Awaitable[None]]:
        async def on(event: Progress) -> None:
            if event.stage == "queued":
                seen.setdefault(name, []).append(event.position)
        return on

    first = asyncio.create_task(a.run("u0", gates.work("run"), timeout=30))
    await until(lambda: gates.running == 1)
    waits = [asyncio.create_task((a if i % 2 else b).run(f"u{i}", gates.work(f"w{i}"), timeout=30,
                                                         on_progress=progress(f"w{i}")))
             for i in (1, 2, 3)]
    await until(lambda: all(seen.get(f"w{i}", [None])[-1] == i for i in (1, 2, 3)))
    gates.release("run")
    await until(lambda: seen["w3"][-1] == 2 and seen["w2"][-1] == 1)  # each moved up one
    for name in ("w1", "w2", "w3"):
        await until(lambda name=name: name in gates.started)  # type: ignore[misc]
        gates.release(name)
    await asyncio.gather(first, *waits)


async def test_refusals_count_every_process(processes: Factory) -> None:
    gates = Gates()
    a = await processes("a", global_concurrency=1, per_user_queued=1, queue_size=2)
    b = await processes("b", global_concurrency=1, per_user_queued=1, queue_size=2)
    first = asyncio.create_task(a.run("alice", gates.work("x"), timeout=30))
    await until(lambda: gates.running == 1)
    waiting = asyncio.create_task(b.run("alice", gates.work("y"), timeout=30))
    await until(lambda: b.snapshot().queued == 1)
    with pytest.raises(TooManyWaiting):
        await a.run("alice", gates.work("z"), timeout=30)
    other = asyncio.create_task(a.run("bob", gates.work("bob"), timeout=30))
    await until(lambda: a.snapshot().queued == 2)
    with pytest.raises(QueueFull):
        await b.run("carol", gates.work("carol"), timeout=30)
    for name in ("x", "y", "bob"):
        gates.release(name)
    await asyncio.gather(first, waiting, other)


async def test_cancel_owner_reaches_other_processes(processes: Factory) -> None:
    gates = Gates()
    a = await processes("a", global_concurrency=1, per_user_queued=2)
    b = await processes("b", global_concurrency=1, per_user_queued=2)
    running = asyncio.create_task(a.run("alice", gates.work("r"), timeout=30))
    await until(lambda: gates.running == 1)
    queued = asyncio.create_task(b.run("alice", gates.work("q"), timeout=30))
    bob = asyncio.create_task(b.run("bob", gates.work("bob"), timeout=30))
    await until(lambda: b.snapshot().queued == 2)
    b.cancel_owner("alice")  # asked on b: alice's running job lives on a
    for job in (running, queued):
        with pytest.raises(Cancelled):
            await job
    await until(lambda: "bob" in gates.started)
    gates.release("bob")
    assert await bob == "result-bob"


async def test_a_dead_process_is_swept_exactly_once(processes: Factory) -> None:
    gates = Gates()
    a = await processes("a", global_concurrency=1, per_user_queued=2, lease_seconds=30)
    b = await processes("b", global_concurrency=1, per_user_queued=2, lease_seconds=30)
    c = await processes("c", global_concurrency=1, per_user_queued=2, lease_seconds=30)
    doomed = [asyncio.create_task(a.run("alice", gates.work(f"a{i}"), timeout=30))
              for i in range(2)]
    await until(lambda: gates.running == 1)
    survivor = asyncio.create_task(b.run("bob", gates.work("bob"), timeout=30))
    await until(lambda: b.snapshot().queued == 2)
    # a stops renewing (as after kill -9): its lease key lapses; its tasks are just abandoned
    assert a._heart is not None
    a._heart.cancel()
    redis = client()
    await redis.delete(f"{a._p}alive:a")
    assert [await b.sweep(), await c.sweep()] == [1, 0]  # whoever notices first, once
    await until(lambda: "bob" in gates.started)  # a's slot and queue entry were freed
    await redis.aclose()
    gates.release("bob")
    assert await survivor == "result-bob"
    for task in doomed:
        task.cancel()
    await asyncio.gather(*doomed, return_exceptions=True)


async def test_a_grant_missed_by_pub_sub_is_picked_up_at_the_next_beat(
        processes: Factory) -> None:
    gates = Gates()
    a = await processes("a", global_concurrency=1)
    b = await processes("b", global_concurrency=1)
    first = asyncio.create_task(a.run("alice", gates.work("first"), timeout=30))
    await until(lambda: gates.running == 1)
    second = asyncio.create_task(b.run("bob", gates.work("second"), timeout=30))
    await until(lambda: b.snapshot().queued == 1)
    assert b._listener is not None
    b._listener.cancel()  # b's pub/sub is down: the grant below is published to nobody
    gates.release("first")
    assert await first == "result-first"
    await asyncio.sleep(0.2)
    assert "second" not in gates.started
    await b.beat()  # the heartbeat sees the job granted in Redis and starts it
    await until(lambda: "second" in gates.started)
    gates.release("second")
    assert await second == "result-second"
