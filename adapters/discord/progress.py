"""A job's progress shown by editing one status message, at most one edit every few seconds.

Status messages are components v2 from their first text (widgets.text_layout): the flag cannot
be removed from a message, so every text a progress message ever shows is a v2 text display.

Discord's limits are per route and global (https://discord.com/developers/docs/topics/rate-
limits), and discord.py keeps them: it waits out a 429 inside the call and retries. So nothing
here retries or sleeps on Discord's behalf; what it does is keep progress from competing with
results. Edits are few (one per job every few seconds, and only when the text changed), all jobs
of the process together take at most :data:`EDITS` a second (an edit over it is skipped, not
queued: a backlog thins progress first), and when the result is ready an edit still waiting in
discord.py's bucket (which it shares with the result: an interaction's token is one route) is
given up after :data:`CLOSE_GRACE` rather than let the result queue behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import discord

from adapters.discord.widgets import text_layout
from bot.api import Progress

log = logging.getLogger(__name__)
Edit = Callable[[str], Awaitable[None]]
#: How long a progress edit in flight may hold up its job's result before it is given up.
CLOSE_GRACE = 1.0


class EditBudget:
    """Progress edits per second for the whole process: a token bucket; over it, edits skip."""

    def __init__(self, per_second: float, burst: float) -> None:
        self.per_second, self.burst = per_second, burst
        self._tokens, self._at = burst, time.monotonic()
        #: Edits skipped for want of budget (what a backlog cost in progress, not in results).
        self.skipped = 0

    def try_take(self) -> bool:
        """Spend one edit if there is one, else count a skip."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.skipped += 1
        return False


#: Discord's global limit is 50 requests a second (interaction routes are not bound by it, the
#: status replies of reply-edits are); progress gets at most a fifth of that, shared by every job.
EDITS = EditBudget(per_second=10.0, burst=20.0)
#: The status line for an event and the seconds since it arrived (``BotApi.progress_text``).
StatusText = Callable[[Progress, float], str | None]


class ProgressReporter:
    """Receives the core's Progress events without blocking it; edits run in a background task."""

    #: Discord rate-limits interaction webhooks per token; one edit per 3 s stays clear of it.
    min_interval = 3.0
    #: How often the elapsed time is refreshed while the model works.
    tick = 5.0

    def __init__(self, edit: Edit, status_text: StatusText, budget: EditBudget = EDITS, *,
                 first_after: float = 0.0) -> None:
        self._edit = edit
        #: A running job's first status waits this long: a deferral's "thinking…" already says
        #: as much, so a job shorter than that costs no edit (a queue place is shown at once).
        self._first_at = time.monotonic() + first_after
        self._budget = budget
        self._status_text = status_text
        self._event: Progress | None = None
        self._event_at = 0.0
        self._last_edit = -1e9
        self._last_text = ""
        self._wake = asyncio.Event()
        self._closed = False
        self._broken = False
        self._task: asyncio.Task[None] | None = None
        self.edited = False
        #: True when close() gave up an edit in flight: it may still land, after anything.
        self.abandoned = False

    async def __call__(self, event: Progress) -> None:
        """The core's progress callback: remember the event and wake the editor."""
        self._event, self._event_at = event, time.monotonic()
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._loop(), name="discord-progress")
        self._wake.set()

    def text(self) -> str | None:
        """The status line for the latest event, or None when there is nothing to show."""
        event = self._event
        if event is None:
            return None
        # From the "started" event on, not event.elapsed (which counts the time queued too).
        return self._status_text(event, time.monotonic() - self._event_at)

    async def _loop(self) -> None:
        while not self._closed and not self._broken:
            running = self._event is not None and self._event.stage == "started"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick if running else None)
            self._wake.clear()
            now = time.monotonic()
            delay = self._last_edit + self.min_interval - now
            if self._event is not None and self._event.stage == "started" and not self.edited:
                delay = max(delay, self._first_at - now)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._sleep_until_closed(), delay)
            if self._closed:
                return
            text = self.text()
            if text and text != self._last_text and self._budget.try_take():
                await self._send(text)

    async def _sleep_until_closed(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()

    async def _send(self, text: str) -> None:
        self._last_edit = time.monotonic()
        try:
            await self._edit(text)
        except discord.RateLimited:
            return  # held back past discord.py's max_ratelimit_timeout: progress is skipped
        except discord.HTTPException as exc:
            # An expired token or a deleted message: stop editing, the result still gets delivered.
            log.info("progress edit failed (%s); no more progress edits", exc.status)
            self._broken = True
            return
        self._last_text = text
        self.edited = True

    async def close(self) -> bool:
        """Stop editing; True when at least one edit landed.

        An edit in flight gets :data:`CLOSE_GRACE` to finish (the first one, which may create a
        status message, longer: cut off, it could leave a message nobody deletes).
        """
        self._closed = True
        self._wake.set()
        if self._task is not None:
            grace = CLOSE_GRACE if self.edited else 10.0
            _, pending = await asyncio.wait({self._task}, timeout=grace)
            for task in pending:
                self.abandoned = True
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return self.edited


class StatusReply:
    """A status reply to the user's message, created on the first progress edit (v2 throughout)."""

    def __init__(self, send: Callable[[str], Awaitable[discord.Message]]) -> None:
        self._send = send
        self._message: discord.Message | None = None

    async def edit(self, text: str) -> None:
        """Create or edit the status message."""
        if self._message is None:
            self._message = await self._send(text)
        else:
            await self._message.edit(view=text_layout(text))

    @property
    def message_id(self) -> int | None:
        """The status message, once made."""
        return self._message.id if self._message is not None else None

    async def remove(self) -> None:
        """Delete the status message once the result (or error) is out."""
        if self._message is not None:
            with contextlib.suppress(discord.HTTPException):
                await self._message.delete()
