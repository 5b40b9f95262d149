"""Status lines tell queue time from generation time: a job that waited starts at "0 s"."""

from __future__ import annotations

import asyncio

from adapters.discord.progress import ProgressReporter
from bot.domain import Progress
from bot.jobs import JobScheduler
from bot.messages import Messages
from bot.present import progress_text


def test_progress_text_counts_from_the_start() -> None:
    messages = Messages()
    assert progress_text(messages, "en", "queued", 6, 9.0) == "⏳ Queued, position 6…"
    assert progress_text(messages, "en", "started", None, 0.4) == "🎨 Generating… 0 s"
    assert progress_text(messages, "en", "started", None, 3.9) == "🎨 Generating… 3 s"
    assert progress_text(messages, "en", "waiting", None, 5.0) is None


async def test_discord_status_after_a_wait_in_the_queue_starts_at_zero() -> None:
    """The scheduler's events carry time since submission; the status line must not show it."""
    sent: list[str] = []

    async def edit(text: str) -> None:
        sent.append(text)

    events: list[Progress] = []
    now = [0.0]
    scheduler = JobScheduler(global_concurrency=1, per_user_concurrency=1, per_user_queued=1,
                          clock=lambda: now[0])
    gate = asyncio.Event()

    async def first() -> None:
        await gate.wait()

    async def second() -> None:
        return None

    async def record(event: Progress) -> None:
        events.append(event)

    blocker = asyncio.create_task(scheduler.run("a", first, timeout=30))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(scheduler.run("b", second, timeout=30, on_progress=record))
    await asyncio.sleep(0.01)
    now[0] = 9.0  # queued behind "a" for nine seconds
    gate.set()
    await asyncio.gather(blocker, waiting)
    started = next(e for e in events if e.stage == "started")
    assert started.elapsed == 9.0  # what the old status line showed as generation time

    messages = Messages()
    reporter = ProgressReporter(edit, lambda event, running: progress_text(
        messages, "en", event.stage, event.position, running))
    reporter.min_interval = 0.0
    await reporter(Progress("b", "queued", 1, 0.0))
    assert reporter.text() == "⏳ Queued, position 1…"
    await reporter(started)
    assert reporter.text() == "🎨 Generating… 0 s"
    await reporter.close()
