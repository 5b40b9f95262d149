"""run_sync: thread work a cancel cannot outrun (its bytes stay leased until it ends)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar

import pytest

from bot.offload import run_sync


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
