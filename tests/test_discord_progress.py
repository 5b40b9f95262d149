"""Discord progress edits give way to results: a process-wide edit budget, a short close grace."""

from __future__ import annotations

import asyncio
import time

from adapters.discord import progress
from adapters.discord.progress import EditBudget, ProgressReporter
from bot.domain import Progress


def reporter(edit: progress.Edit, budget: EditBudget) -> ProgressReporter:
    """A reporter whose status line is the running time, edits as often as the budget allows."""
    made = ProgressReporter(edit, lambda event, running: f"{event.stage} {running:.2f}", budget)
    made.min_interval, made.tick = 0.0, 0.01
    return made


async def test_a_backlog_of_jobs_shares_one_edit_budget() -> None:
    sent: list[str] = []

    async def edit(text: str) -> None:
        sent.append(text)

    budget = EditBudget(per_second=50.0, burst=5.0)
    jobs = [reporter(edit, budget) for _ in range(40)]
    for n, job in enumerate(jobs):
        await job(Progress(f"j{n}", "started", None, 0.0))
    await asyncio.sleep(0.3)
    for job in jobs:
        await job.close()
    # 40 jobs ticking every 10 ms would have made ~1200 edits; the process made 5 + 50/s.
    assert 5 <= len(sent) <= 5 + 50 * 0.5
    assert budget.skipped > 100


async def test_an_edit_stuck_in_discords_rate_limit_does_not_hold_the_result() -> None:
    calls: list[str] = []

    async def edit(text: str) -> None:
        calls.append(text)
        if len(calls) > 1:
            await asyncio.sleep(30)  # discord.py sleeping out a 429 on the token's bucket

    job = reporter(edit, EditBudget(per_second=100.0, burst=100.0))
    await job(Progress("j", "started", None, 0.0))
    while len(calls) < 2:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    started = time.monotonic()
    assert await job.close() is True  # the first edit landed
    assert time.monotonic() - started < progress.CLOSE_GRACE + 0.5


async def test_the_first_edit_may_finish_before_close_gives_up() -> None:
    done = asyncio.Event()

    async def edit(text: str) -> None:  # creating a status reply: cut off, it could be orphaned
        await asyncio.sleep(progress.CLOSE_GRACE + 0.3)
        done.set()

    job = reporter(edit, EditBudget(per_second=100.0, burst=100.0))
    await job(Progress("j", "started", None, 0.0))
    await asyncio.sleep(0.05)
    assert await job.close() is True
    assert done.is_set()


async def test_an_edit_held_back_for_long_is_skipped_and_the_next_one_still_goes() -> None:
    """Past discord.py's max_ratelimit_timeout an edit raises RateLimited: progress skips it."""
    import discord

    calls: list[str] = []

    async def edit(text: str) -> None:
        calls.append(text)
        if len(calls) == 1:
            raise discord.RateLimited(45.0)

    job = reporter(edit, EditBudget(per_second=100.0, burst=100.0))
    await job(Progress("j", "started", None, 0.0))
    async with asyncio.timeout(5):
        while len(calls) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert await job.close() is True  # later edits landed; nothing was raised
