"""run_sync: thread work a cancel cannot outrun (its bytes stay leased until it ends)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

import pytest

from bot.offload import LEND_AFTER, PARSERS, parsing, quick, run_sync, waiting


async def test_returns_the_result_and_raises_the_error() -> None:
    assert await run_sync(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        await run_sync(divmod, 1, 0)


async def test_a_cancel_waits_for_the_running_thread() -> None:
    started, finished = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        time.sleep(0.3)
        finished.set()

    task = asyncio.create_task(run_sync(work))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()  # a second cancel does not cut the wait short either
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()  # the caller only hears of the cancel once the work has ended


async def test_a_timeout_waits_too_and_still_times_out() -> None:
    finished = threading.Event()

    def work() -> None:
        time.sleep(0.3)
        finished.set()

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await run_sync(work)
    assert finished.is_set()


async def test_a_call_still_queued_when_cancelled_never_runs() -> None:
    release, ran = threading.Event(), list[str]()
    with ThreadPoolExecutor(max_workers=1) as pool:
        blocker = asyncio.create_task(run_sync(release.wait, 5, executor=pool))
        queued = asyncio.create_task(run_sync(ran.append, "ran", executor=pool))
        await asyncio.sleep(0.05)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued  # at once: nothing of it was running
        release.set()
        assert await blocker
    assert ran == []


async def test_context_variables_reach_the_thread() -> None:
    var: ContextVar[str] = ContextVar("var", default="unset")
    var.set("job 7")
    assert await run_sync(var.get) == "job 7"


async def test_answers_are_parsed_a_few_at_a_time_in_arrival_order() -> None:
    inside, most, order = 0, 0, list[int]()

    async def answer(n: int) -> None:
        nonlocal inside, most
        async with parsing():
            inside += 1
            most = max(most, inside)
            order.append(n)
            async with parsing():  # nested (extract inside a provider's slot): no second slot
                await asyncio.sleep(0.01)
            inside -= 1

    tasks = []
    for n in range(4 * PARSERS):
        tasks.append(asyncio.create_task(answer(n)))
        await asyncio.sleep(0)  # they arrive in this order
    await asyncio.gather(*tasks)
    assert most == PARSERS and order == sorted(order)


async def test_a_download_lends_the_slot_out_and_takes_it_back() -> None:
    events: list[str] = []
    downloading = asyncio.Event()

    async def with_url() -> None:
        async with parsing():
            async with waiting():
                downloading.set()
                await asyncio.sleep(0.05)
            events.append("url parsed")

    await alongside(with_url(), downloading, events)
    assert events == ["other in", "url parsed"]  # it did not wait for the download


async def test_a_quick_read_keeps_its_slot_so_answers_finish_in_arrival_order() -> None:
    events: list[str] = []
    reading = asyncio.Event()

    async def read() -> str:
        reading.set()
        await asyncio.sleep(LEND_AFTER / 4)  # yields: a lent slot would let the other one in
        events.append("first read")
        return "first"

    async def first() -> None:
        async with parsing():
            assert await quick(read()) == "first"
            events.append("first parsed")

    await alongside(first(), reading, events)
    assert events == ["first read", "first parsed", "other in"]


async def test_a_read_waiting_on_the_network_lends_its_slot_out() -> None:
    events: list[str] = []
    reading = asyncio.Event()

    async def slow() -> None:
        async with parsing():
            reading.set()
            await quick(asyncio.sleep(LEND_AFTER * 10))
            events.append("slow parsed")

    await alongside(slow(), reading, events)
    assert events == ["other in", "slow parsed"]  # the slow link held nobody up


async def alongside(work: Coroutine[Any, Any, None], started: asyncio.Event,
                    events: list[str]) -> None:
    """``work`` in the one free parse slot, and another answer asking for one once it started."""

    async def other() -> None:
        await started.wait()
        async with parsing():
            events.append("other in")

    async with contextlib.AsyncExitStack() as others:  # every other slot stays taken
        for _ in range(PARSERS - 1):
            await others.enter_async_context(parsing_elsewhere())
        await asyncio.gather(work, other())


async def test_a_cancel_cancels_the_read_and_returns_once_it_has_ended() -> None:
    ended: list[str] = []

    async def read() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.02)  # closing the connection takes a moment
            ended.append("read ended")

    async def job() -> None:
        async with parsing():
            await quick(read())

    task = asyncio.create_task(job())
    await asyncio.sleep(LEND_AFTER * 3)  # lent out by now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended == ["read ended"]
    async with asyncio.timeout(1):  # and every slot is free again
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(PARSERS):
                await stack.enter_async_context(parsing_elsewhere())


@contextlib.asynccontextmanager
async def parsing_elsewhere() -> AsyncIterator[None]:
    """A slot taken from another task (a nested parsing() in this one would take none)."""
    entered, done = asyncio.Event(), asyncio.Event()

    async def take() -> None:
        async with parsing():
            entered.set()
            await done.wait()

    task = asyncio.create_task(take())
    await entered.wait()
    try:
        yield
    finally:
        done.set()
        await task
