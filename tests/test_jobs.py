"""Scheduler tests: limits, round-robin fairness, positions, timeouts, cancellation, drain."""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import jobs_local
from bot.domain import Progress
from bot.errors import (
    Cancelled,
    JobTimeout,
    QueueFull,
    TooManyWaiting,
    UpstreamBusy,
    UpstreamError,
)
from bot.jobs import JobScheduler, SchedulerStats


class Gates:
    """Event-based fake work: each named job records its start and waits to be released."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.running = 0
        self.peak = 0

    def _event(self, name: str) -> asyncio.Event:
        return self.events.setdefault(name, asyncio.Event())

    def work(self, name: str) -> Callable[[], Awaitable[str]]:
        async def body() -> str:
            self.started.append(name)
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                await self._event(name).wait()
            except asyncio.CancelledError:
                self.cancelled.append(name)
                raise
            finally:
                self.running -= 1
            return f"result-{name}"

        return body

    def release(self, name: str) -> None:
        self._event(name).set()

    async def wait_started(self, name: str) -> None:
        await until(lambda: name in self.started)

    async def wait_latest(self, name: str) -> None:
        """Wait until ``name`` is the most recently started job."""
        await until(lambda: self.started[-1:] == [name])


class Events:
    """Collects progress events per job."""

    def __init__(self) -> None:
        self.by_job: dict[str, list[Progress]] = defaultdict(list)

    async def __call__(self, event: Progress) -> None:
        self.by_job[event.job_id].append(event)

    def stages(self, job_id: str) -> list[str]:
        return [e.stage for e in self.by_job[job_id]]

    def positions(self, job_id: str) -> list[int | None]:
        return [e.position for e in self.by_job[job_id] if e.stage == "queued"]


async def until(cond: Callable[[], bool]) -> None:
    """Let the loop run until ``cond()`` holds (at most 2 s)."""
    async with asyncio.timeout(2):
        while not cond():  # noqa: ASYNC110 - test helper, polling is fine here
            await asyncio.sleep(0.001)


def submit(sched: JobScheduler, gates: Gates, owner: str, name: str, events: Events | None = None,
           timeout: float = 5.0) -> asyncio.Task[str]:
    """Start a run() call for a gated job named ``name`` in its own task."""
    return asyncio.create_task(sched.run(owner, gates.work(name), timeout=timeout,
                                         on_progress=events, job_id=name))


async def test_success_returns_result_with_started_and_finished() -> None:
    sched, gates, events = JobScheduler(global_concurrency=2), Gates(), Events()
    task = submit(sched, gates, "a", "j1", events)
    await until(lambda: gates.started == ["j1"])
    assert sched.snapshot() == SchedulerStats(queued=0, running=1, by_owner={"a": (1, 0)})
    gates.release("j1")
    assert await task == "result-j1"
    assert events.stages("j1") == ["started", "finished"]
    assert events.by_job["j1"][-1].error is None and events.by_job["j1"][-1].elapsed >= 0
    assert sched.snapshot() == SchedulerStats(queued=0, running=0, by_owner={})


async def test_elapsed_comes_from_the_injected_clock_and_position_is_immediate() -> None:
    now = [100.0]
    sched = JobScheduler(global_concurrency=1, clock=lambda: now[0])
    gates, events = Gates(), Events()
    first = submit(sched, gates, "a", "first", events)
    second = submit(sched, gates, "b", "second", events)
    await asyncio.sleep(0)  # both submitted; the position refresh has not run yet
    assert sched.position("second") == 1 and sched.position("first") is None
    now[0] = 103.0
    gates.release("first")
    await first
    now[0] = 110.0
    await gates.wait_started("second")
    gates.release("second")
    await second
    assert [(e.stage, e.elapsed) for e in events.by_job["first"]] == [
        ("started", 0.0), ("finished", 3.0)]
    assert [e.stage for e in events.by_job["second"]] == ["queued", "started", "finished"]
    assert events.by_job["second"][-1].elapsed == 10.0


async def test_work_errors_propagate_with_failed_event_keys() -> None:
    sched, events = JobScheduler(global_concurrency=2), Events()

    async def busy() -> None:
        raise UpstreamBusy(7)

    async def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(UpstreamBusy):
        await sched.run("a", busy, timeout=1, on_progress=events, job_id="busy")
    with pytest.raises(ValueError, match="boom"):
        await sched.run("a", boom, timeout=1, on_progress=events, job_id="boom")
    assert [(e.stage, e.error) for e in events.by_job["busy"]] == [
        ("started", None), ("failed", "error.busy")]
    assert events.by_job["boom"][-1].error == "error.internal"


async def test_global_concurrency_is_never_exceeded() -> None:
    sched, gates = JobScheduler(global_concurrency=3, queue_size=50), Gates()
    tasks = [submit(sched, gates, f"u{i}", f"j{i}") for i in range(10)]
    await until(lambda: len(gates.started) == 3)
    assert sched.snapshot().running == 3 and sched.snapshot().queued == 7
    for i in range(10):
        await gates.wait_started(f"j{i}")
        gates.release(f"j{i}")
    assert await asyncio.gather(*tasks) == [f"result-j{i}" for i in range(10)]
    assert gates.peak == 3


async def test_second_request_queues_third_is_refused() -> None:
    sched, gates, events = JobScheduler(global_concurrency=10), Gates(), Events()
    first = submit(sched, gates, "a", "j1", events)
    second = submit(sched, gates, "a", "j2", events)
    await until(lambda: events.positions("j2") == [1])
    with pytest.raises(TooManyWaiting) as refused:
        await sched.run("a", gates.work("j3"), timeout=5)
    assert refused.value.params == {"waiting": 1}
    assert sched.snapshot().by_owner == {"a": (1, 1)}
    other = submit(sched, gates, "b", "k1")  # other owners are not affected
    await until(lambda: "k1" in gates.started)
    gates.release("j1")
    gates.release("k1")
    assert await first == "result-j1"
    await until(lambda: "j2" in gates.started)
    gates.release("j2")
    assert (await second, await other) == ("result-j2", "result-k1")
    assert events.stages("j2") == ["queued", "started", "finished"]


async def test_queue_full_when_global_queue_is_bounded() -> None:
    sched, gates = JobScheduler(global_concurrency=1, queue_size=2), Gates()
    tasks = [submit(sched, gates, owner, owner) for owner in "abc"]
    await until(lambda: sched.snapshot().queued == 2)
    with pytest.raises(QueueFull):
        await sched.run("d", gates.work("d"), timeout=5)
    for owner in "abc":
        await gates.wait_started(owner)
        gates.release(owner)
    await asyncio.gather(*tasks)


async def test_round_robin_owner_with_many_jobs_does_not_starve_others() -> None:
    sched = JobScheduler(global_concurrency=1, per_user_queued=10, queue_size=100)
    gates = Gates()
    tasks = [submit(sched, gates, "heavy", f"h{i}") for i in range(10)]
    tasks += [submit(sched, gates, "b", f"b{i}") for i in range(2)]
    tasks += [submit(sched, gates, "c", "c0")]
    await until(lambda: gates.started == ["h0"])
    order = ["h0", "h1", "b0", "c0", "h2", "b1", "h3", "h4", "h5", "h6", "h7", "h8", "h9"]
    # positions predict exactly the order jobs start in
    assert [sched.position(name) for name in order] == [None, *range(1, 13)]
    for name in order:
        await gates.wait_latest(name)
        gates.release(name)
    await asyncio.gather(*tasks)
    assert gates.started == order


async def test_positions_update_as_jobs_ahead_finish() -> None:
    sched, gates, events = JobScheduler(global_concurrency=1, queue_size=50), Gates(), Events()
    names = [f"u{i}" for i in range(6)]
    tasks = [submit(sched, gates, name, name, events) for name in names]
    await until(lambda: all(events.positions(n) for n in names[1:]))
    assert [sched.position(n) for n in names] == [None, 1, 2, 3, 4, 5]
    for name in names:
        await gates.wait_latest(name)
        gates.release(name)
    await asyncio.gather(*tasks)
    for i, name in enumerate(names[1:], start=1):
        assert events.positions(name) == list(range(i, 0, -1))
        assert events.stages(name)[-2:] == ["started", "finished"]
    assert events.stages("u0") == ["started", "finished"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from("abcde"), min_size=1, max_size=25))
def test_positions_predict_actual_start_order(owners: list[str]) -> None:
    async def scenario() -> None:
        sched = JobScheduler(global_concurrency=1, per_user_queued=25, queue_size=100)
        gates = Gates()
        names = [f"{owner}{i}" for i, owner in enumerate(owners)]
        tasks = [submit(sched, gates, o, n) for o, n in zip(owners, names, strict=True)]
        await until(lambda: len(gates.started) == 1)
        waiting = [n for n in names if sched.position(n) is not None]
        predicted = [gates.started[0], *sorted(waiting, key=lambda n: sched.position(n) or 0)]
        assert sorted(sched.position(n) or 0 for n in waiting) == list(range(1, len(names)))
        for name in predicted:
            await gates.wait_latest(name)
            gates.release(name)
        await asyncio.gather(*tasks)
        assert gates.started == predicted

    asyncio.run(scenario())


async def test_timeout_cancels_work_and_frees_the_slot() -> None:
    sched, gates, events = JobScheduler(global_concurrency=1), Gates(), Events()
    slow = submit(sched, gates, "a", "slow", events, timeout=0.05)
    nxt = submit(sched, gates, "b", "next")
    with pytest.raises(JobTimeout) as timed_out:
        async with asyncio.timeout(5):  # a scheduler that never times out fails, not hangs
            await slow
    assert timed_out.value.key == "error.timeout" and gates.cancelled == ["slow"]
    assert events.by_job["slow"][-1].error == "error.timeout"
    await until(lambda: "next" in gates.started)
    gates.release("next")
    assert await nxt == "result-next"


async def test_cancel_by_requester_queued_and_running() -> None:
    sched, gates, events = JobScheduler(global_concurrency=1), Gates(), Events()
    running = submit(sched, gates, "a", "run", events)
    queued = submit(sched, gates, "b", "wait", events)
    behind = submit(sched, gates, "c", "behind", events)
    await until(lambda: events.positions("behind") == [2])
    assert sched.cancel("wait") is True
    with pytest.raises(Cancelled):
        await queued
    assert gates.started == ["run"]  # a cancelled queued job never runs
    await until(lambda: events.positions("behind") == [2, 1])
    assert sched.cancel("run") is True
    with pytest.raises(Cancelled):
        await running
    assert gates.cancelled == ["run"]
    assert sched.cancel("run") is False and sched.cancel("nope") is False
    await until(lambda: "behind" in gates.started)
    gates.release("behind")
    assert await behind == "result-behind"
    assert events.by_job["wait"][-1].error == "error.cancelled"


async def test_cancel_owner_cancels_running_and_queued() -> None:
    sched = JobScheduler(global_concurrency=5, per_user_queued=3)
    gates = Gates()
    tasks = [submit(sched, gates, "a", f"a{i}") for i in range(3)]
    other = submit(sched, gates, "b", "b0")
    await until(lambda: sched.snapshot().by_owner.get("a") == (1, 2) and "b0" in gates.started)
    assert sched.cancel_owner("a") == 3 and sched.cancel_owner("zzz") == 0
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, Cancelled) for r in results)
    assert sched.snapshot().by_owner == {"b": (1, 0)}
    gates.release("b0")
    assert await other == "result-b0"


async def test_caller_cancelled_while_queued_removes_the_job() -> None:
    sched, gates, events = JobScheduler(global_concurrency=1), Gates(), Events()
    first = submit(sched, gates, "a", "first")
    queued = submit(sched, gates, "b", "gone", events)
    behind = submit(sched, gates, "c", "behind", events)
    await until(lambda: events.positions("behind") == [2])
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    await until(lambda: events.positions("behind") == [2, 1])
    assert sched.position("gone") is None and sched.snapshot().queued == 1
    gates.release("first")
    await until(lambda: "behind" in gates.started)
    gates.release("behind")
    await asyncio.gather(first, behind)
    assert "gone" not in gates.started


async def test_caller_cancelled_while_running_cancels_work_without_orphans() -> None:
    sched, gates = JobScheduler(global_concurrency=1), Gates()
    task = submit(sched, gates, "a", "j")
    await until(lambda: gates.started == ["j"])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # run() waited for the work task to stop before propagating
    assert gates.cancelled == ["j"] and gates.running == 0
    assert sched.snapshot() == SchedulerStats(queued=0, running=0, by_owner={})
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_caller_timeout_wrapping_run_cancels_the_job() -> None:
    sched, gates = JobScheduler(global_concurrency=1), Gates()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.03):
            await sched.run("a", gates.work("j"), timeout=5)
    assert gates.cancelled == ["j"] and sched.snapshot().running == 0


async def test_drain_cancels_queued_finishes_within_grace_and_cancels_the_rest() -> None:
    sched, gates = JobScheduler(global_concurrency=2, queue_size=10), Gates()
    quick = submit(sched, gates, "a", "quick")
    stuck = submit(sched, gates, "b", "stuck")
    queued = [submit(sched, gates, f"q{i}", f"q{i}") for i in range(3)]
    await until(lambda: len(gates.started) == 2 and sched.snapshot().queued == 3)
    asyncio.get_running_loop().call_later(0.02, gates.release, "quick")
    await sched.drain(grace=0.2)
    assert not sched.accepting
    assert await quick == "result-quick"
    with pytest.raises(Cancelled):
        await stuck
    for task in queued:
        with pytest.raises(Cancelled):
            await task
    assert gates.started == ["quick", "stuck"] and gates.cancelled == ["stuck"]
    with pytest.raises(QueueFull):
        await sched.run("late", gates.work("late"), timeout=5)
    assert sched.snapshot() == SchedulerStats(queued=0, running=0, by_owner={})


async def test_drain_with_nothing_running_returns_at_once() -> None:
    sched = JobScheduler(global_concurrency=1)
    await sched.drain(grace=10)
    assert not sched.accepting


async def test_failing_or_hanging_progress_callback_does_not_break_the_job(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # The scheduler lives in jobs_local (bot.jobs re-exports it): patch where it is read.
    monkeypatch.setattr(jobs_local, "CALLBACK_TIMEOUT", 0.02)
    sched = JobScheduler(global_concurrency=1)
    seen: list[str] = []

    async def raising(event: Progress) -> None:
        seen.append(event.stage)
        raise RuntimeError("callback bug")

    async def hanging(event: Progress) -> None:
        await asyncio.sleep(10)

    async def work() -> int:
        return 42

    assert await sched.run("a", work, timeout=1, on_progress=raising) == 42
    assert seen == ["started", "finished"]
    assert await sched.run("a", work, timeout=1, on_progress=hanging) == 42
    assert "progress callback failed" in caplog.text


async def test_context_variables_reach_the_work() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    sched = JobScheduler(global_concurrency=1)

    async def work() -> str:
        return var.get()

    async def caller(value: str) -> str:
        var.set(value)
        return await sched.run(value, work, timeout=1)

    assert list(await asyncio.gather(caller("x"), caller("y"))) == ["x", "y"]


async def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        JobScheduler(global_concurrency=0)
    with pytest.raises(ValueError):
        JobScheduler(global_concurrency=1, queue_size=-1)
    sched, gates = JobScheduler(global_concurrency=1), Gates()
    task = submit(sched, gates, "a", "dup")
    await until(lambda: gates.started == ["dup"])
    with pytest.raises(ValueError, match="duplicate"):
        await sched.run("b", gates.work("x"), timeout=1, job_id="dup")
    gates.release("dup")
    await task


async def test_thousands_of_queued_jobs_complete_in_fair_order() -> None:
    sched = JobScheduler(global_concurrency=20, per_user_queued=5, queue_size=5000)
    events = Events()
    starts: list[str] = []

    def work(owner: str) -> Callable[[], Awaitable[str]]:
        async def body() -> str:
            starts.append(owner)
            await asyncio.sleep(0)
            return owner

        return body

    owners = [f"u{i}" for i in range(500)]
    tasks = [asyncio.create_task(sched.run(o, work(o), timeout=5, on_progress=events))
             for _ in range(5) for o in owners]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    done = [r for r in results if isinstance(r, str)]
    assert len(done) == 2500
    # round-robin: every owner's first job starts before any owner's third job
    assert set(starts[:500]) == set(owners)
    assert all(e[-1].stage == "finished" for e in events.by_job.values())
    assert sched.snapshot() == SchedulerStats(queued=0, running=0, by_owner={})


# -- exactly-once settle/refund under random failures ----------------------------------------

BEHAVIOURS = ("ok", "raise", "slow", "cancel", "caller", "drained")
job_plans = st.tuples(st.integers(0, 5), st.sampled_from(BEHAVIOURS), st.integers(0, 8),
                      st.integers(0, 10))


@settings(max_examples=40, deadline=None)
@given(plans=st.lists(job_plans, min_size=1, max_size=30), global_limit=st.integers(1, 4),
       per_user=st.integers(1, 2), drain_at=st.one_of(st.none(), st.integers(0, 40)),
       seed=st.integers(0, 2**16))
def test_every_job_settles_or_refunds_exactly_once(
        plans: list[tuple[int, str, int, int]], global_limit: int, per_user: int,
        drain_at: int | None, seed: int) -> None:
    asyncio.run(_exactly_once(plans, global_limit, per_user, drain_at, random.Random(seed)))


async def _exactly_once(plans: list[tuple[int, str, int, int]], global_limit: int, per_user: int,
                        drain_at: int | None, rng: random.Random) -> None:
    sched = JobScheduler(global_concurrency=global_limit, per_user_concurrency=per_user,
                         per_user_queued=2, queue_size=12)
    loop = asyncio.get_running_loop()
    timeout = 0.02
    reserved: Counter[str] = Counter()
    settled: Counter[str] = Counter()
    refunded: Counter[str] = Counter()
    outcomes: dict[str, Any] = {}
    waited: dict[str, float] = {}  # from run() call to outcome
    interrupted: set[str] = set()  # work that saw CancelledError
    running: Counter[str] = Counter()
    peak_global = 0
    peak_owner = 0

    def make_work(job_id: str, owner: str, behaviour: str, ms: int) -> Callable[[], Awaitable[str]]:
        async def body() -> str:
            nonlocal peak_global, peak_owner
            running[owner] += 1
            peak_global = max(peak_global, sum(running.values()))
            peak_owner = max(peak_owner, running[owner])
            try:
                if behaviour in ("ok", "raise"):
                    await asyncio.sleep(ms / 1000)
                    if behaviour == "raise":
                        raise UpstreamError("broken body")
                    return "image"
                await asyncio.sleep(1 if behaviour != "drained" else rng.choice((0.004, 1)))
                return "late image"
            except asyncio.CancelledError:
                interrupted.add(job_id)
                raise
            finally:
                running[owner] -= 1

        return body

    async def service_call(job_id: str, owner: str, behaviour: str, ms: int, at: int) -> None:
        """What the service does: reserve, run, then settle on return or refund on raise."""
        await asyncio.sleep(at / 1000)
        reserved[job_id] += 1
        if behaviour == "cancel":  # the requester presses "cancel" while queued or running
            loop.call_later(ms / 1000, sched.cancel, job_id)
        elif behaviour == "caller":  # the request's own task is cancelled (e.g. shutdown)
            loop.call_later(ms / 1000, asyncio.current_task().cancel)  # type: ignore[union-attr]
        called = loop.time()
        try:
            outcomes[job_id] = await sched.run(owner, make_work(job_id, owner, behaviour, ms),
                                               timeout=timeout, job_id=job_id)
        except BaseException as exc:
            refunded[job_id] += 1
            outcomes[job_id] = exc
            raise
        else:
            settled[job_id] += 1
        finally:
            waited[job_id] = loop.time() - called

    tasks = {}
    for i, (owner_no, behaviour, ms, at) in enumerate(plans):
        job_id = f"j{i}-{behaviour}"
        tasks[job_id] = loop.create_task(service_call(job_id, f"o{owner_no}", behaviour, ms, at))
    if drain_at is not None:
        await asyncio.sleep(drain_at / 1000)
        await sched.drain(grace=0.01)
    await asyncio.gather(*tasks.values(), return_exceptions=True)

    for job_id in tasks:
        assert reserved[job_id] == 1
        assert settled[job_id] + refunded[job_id] == 1, job_id
        outcome, behaviour = outcomes[job_id], job_id.split("-")[1]
        if isinstance(outcome, JobTimeout):  # only when the work really overran its time
            assert job_id in interrupted and waited[job_id] >= timeout
        elif isinstance(outcome, Cancelled):  # by the requester or by the drain
            assert behaviour == "cancel" or drain_at is not None
        elif isinstance(outcome, asyncio.CancelledError):
            assert behaviour == "caller"
        elif not isinstance(outcome, QueueFull | TooManyWaiting):  # else: refused at admission
            expected = {"ok": "image", "raise": UpstreamError, "drained": "late image"}
            assert outcome == expected.get(behaviour) or type(outcome) is expected.get(behaviour)
    assert peak_global <= global_limit and peak_owner <= per_user
    assert sched.snapshot() == SchedulerStats(queued=0, running=0, by_owner={})
    assert sum(running.values()) == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}
