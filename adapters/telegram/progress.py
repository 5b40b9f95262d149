"""While a job runs: the upload_photo chat action, and one status message edited in place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from types import TracebackType

from telegram import Bot
from telegram.constants import ChatAction, ParseMode
from telegram.error import TelegramError

from adapters.telegram.deliver import SEND_RETRY_DELAYS, markup
from adapters.telegram.inbound import Target
from adapters.telegram.ratelimit import BEST_EFFORT, Skipped
from bot.api import BotApi, Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timing:
    """How often progress is shown, and how long a failed send waits (tests shorten these)."""

    #: Telegram shows a chat action for about 5 s, so it is repeated every 4 s.
    action_interval: float = 4.0
    #: At most one status edit per chat this often (flood limits).
    edit_interval: float = 3.0
    #: Groups share a budget of about 20 messages a minute, so their status moves slower.
    group_edit_interval: float = 6.0
    #: Jobs that finish faster than this get no status message at all.
    status_delay: float = 2.0
    tick: float = 0.5
    #: Pauses before re-sending a message after a transient failure (deliver.SEND_RETRY_DELAYS).
    send_retry_delays: tuple[float, ...] = SEND_RETRY_DELAYS


class Throttle:
    """When each chat's status message was last sent or edited, shared by all its jobs."""

    def __init__(self) -> None:
        self._last: dict[int, float] = {}

    def ready(self, chat_id: int, interval: float, now: float) -> bool:
        """True when ``chat_id`` may get another status edit at ``now``."""
        return now - self._last.get(chat_id, -interval) >= interval

    def mark(self, chat_id: int, now: float) -> None:
        """Record an edit."""
        self._last[chat_id] = now


class StatusReporter:
    """Async context manager that shows a job's progress and cleans up after it.

    The chat action needs no language, so it starts at once; status texts wait for ``locale``.
    """

    def __init__(self, bot: Bot, api: BotApi, target: Target, locale: str | None,
                 timing: Timing, throttle: Throttle) -> None:
        self._bot = bot
        self._target = target
        self._api = api
        self.locale = locale
        self._timing = timing
        self._throttle = throttle
        self._interval = timing.edit_interval if target.chat_id > 0 else timing.group_edit_interval
        self._event: Progress | None = None
        self._started = 0.0
        self._opened = 0.0
        self._status: int | None = None
        self._shown = ""
        self._gave_up = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StatusReporter:
        self._opened = time.monotonic()
        self._task = asyncio.create_task(self._loop(), name="telegram:progress")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._status is not None:
            with contextlib.suppress(TelegramError):
                await self._bot.delete_message(self._target.chat_id, self._status)

    async def on_progress(self, event: Progress) -> None:
        """The core's progress callback: only records the state (the loop does the calls)."""
        self._event = event
        if event.stage == "started":
            self._started = time.monotonic()

    def _text(self, now: float) -> str | None:
        if self.locale is None or self._event is None:
            return None
        return self._api.progress_text(self.locale, self._event, now - self._started)

    async def _loop(self) -> None:
        BEST_EFFORT.set(True)  # status messages never hold up anyone's result (this task only)
        next_action = 0.0
        while True:
            now = time.monotonic()
            if now >= next_action:
                next_action = now + self._timing.action_interval
                try:
                    await self._bot.send_chat_action(self._target.chat_id, ChatAction.UPLOAD_PHOTO,
                                                     message_thread_id=self._target.thread_id)
                except TelegramError as err:
                    log.debug("chat action failed: %s", err)
            await self._update_status(time.monotonic())
            await asyncio.sleep(self._timing.tick)

    async def _update_status(self, now: float) -> None:
        text, event = self._text(now), self._event
        if text is None or event is None or self._gave_up:
            return
        chat_id = self._target.chat_id
        try:
            if self._status is None:
                if event.stage == "queued" or now - self._opened >= self._timing.status_delay:
                    message = await self._bot.send_message(
                        chat_id, markup(text), parse_mode=ParseMode.HTML,
                        reply_parameters=self._target.reply,
                        message_thread_id=self._target.thread_id, disable_notification=True)
                    self._status, self._shown = message.message_id, text
                    self._throttle.mark(chat_id, now)
            elif text != self._shown and self._throttle.ready(chat_id, self._interval, now):
                self._throttle.mark(chat_id, now)
                self._shown = text
                await self._bot.edit_message_text(markup(text), chat_id, self._status,
                                                  parse_mode=ParseMode.HTML)
        except Skipped:
            pass  # the budget is busy with results; try again on a later tick
        except TelegramError as err:
            log.info("status message in %s: %s", chat_id, err)
            self._gave_up = self._status is None
