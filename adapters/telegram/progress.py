"""While a job runs: a draft in private chats, elsewhere one status message edited in place.

Private chats get a native draft (``sendMessageDraft``, Bot API 9.3, open to every bot since
9.5; python-telegram-bot 22.6+; https://core.telegram.org/bots/api#sendmessagedraft). A draft
is a typing indicator with text, not a message, so it costs nothing from the sending budget, and
the result's message replaces it (clients drop a bot's draft when its next message arrives). It
is "a temporary 30-second preview", so it is renewed every :attr:`Timing.draft_renew` seconds;
an empty text shows the client's own, translated "Thinking..." (Bot API 10.0).

Groups (and private chats whose Bot API refuses drafts, or every chat with ``[telegram] drafts =
false``, for users whose clients do not show drafts) get one status message, sent as the
first feedback, edited only when its text changes and at most every few seconds (a group shares
20 messages a minute), and deleted once the result is out: with the result, three calls a job.
Status calls go in the STATUS lane: when the budget is busy they are skipped (tried again after
one, two, then four ticks), and a chat action (not a message either) stands in as the feedback
until one gets through; its repeats draw from one allowance shared by every job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from types import TracebackType

from telegram import Bot
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, RetryAfter, TelegramError

from adapters.telegram.deliver import SEND_RETRY_DELAYS, markup
from adapters.telegram.inbound import Target
from adapters.telegram.ratelimit import Lane, Skipped, lane, seconds
from bot.api import BotApi, HandedOver, Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timing:
    """How often progress is shown, and how long a failed send waits (tests shorten these)."""

    #: Telegram shows a chat action for about 5 s, so it is repeated sooner.
    action_interval: float = 4.5
    #: At most one status edit per private chat this often (when drafts are not available).
    edit_interval: float = 3.0
    #: Groups share a budget of about 20 messages a minute, so their status moves slower.
    group_edit_interval: float = 15.0
    #: A draft lives 30 s: it is sent again this often (with the time so far, in these steps),
    #: 5 s before it would lapse; a 1K job (10-20 s on Gemini) needs no renewal at all.
    draft_renew: float = 25.0
    #: When neither a draft nor a status message is out by then, a chat action stands in.
    feedback_grace: float = 0.3
    tick: float = 0.5
    #: Pauses before re-sending a message after a transient failure (deliver.SEND_RETRY_DELAYS).
    send_retry_delays: tuple[float, ...] = SEND_RETRY_DELAYS


class Throttle:
    """Progress state shared by every job: each chat's last status edit, whether drafts work."""

    def __init__(self, drafts: bool = True, repeats_per_second: float = 20.0) -> None:
        self._last: dict[int, float] = {}
        #: False when switched off, or once Telegram refused a draft (an older Bot API server):
        #: status messages then.
        self.drafts = drafts
        # Repeated chat actions, shared by every job: each is a Bot API call, and when a burst
        # keeps hundreds of status messages waiting, repeating all of them every few seconds
        # took the event loop from the results (bench/bench_feedback.py, py-spy).
        self._repeat_rate = repeats_per_second
        self._repeats = self._repeat_rate
        self._repeats_at = 0.0

    def may_repeat_action(self, now: float) -> bool:
        """Whether a job may send its chat action again now (a job's first one always goes)."""
        self._repeats = min(self._repeat_rate,
                            self._repeats + (now - self._repeats_at) * self._repeat_rate)
        self._repeats_at = now
        if self._repeats < 1:
            return False
        self._repeats -= 1
        return True

    def ready(self, chat_id: int, interval: float, now: float) -> bool:
        """True when ``chat_id`` may get another status edit at ``now``."""
        return now - self._last.get(chat_id, -interval) >= interval

    def mark(self, chat_id: int, now: float) -> None:
        """Record an edit."""
        self._last[chat_id] = now
        if len(self._last) > 10_000:  # forget chats quiet for a minute
            self._last = {c: t for c, t in self._last.items() if now - t < 60}


class StatusReporter:
    """Async context manager that shows a job's progress and cleans up after it.

    The draft and the chat action need no language, so they go out at once; status texts wait
    for ``locale``.
    """

    def __init__(self, bot: Bot, api: BotApi, target: Target, locale: str | None,
                 timing: Timing, throttle: Throttle, status: int | None = None) -> None:
        self._bot = bot
        self._target = target
        self._api = api
        self._locale = locale
        self._timing = timing
        self._throttle = throttle
        self._interval = timing.edit_interval if target.chat_id > 0 else timing.group_edit_interval
        self._drafting = target.chat_id > 0 and throttle.drafts
        self._draft_id = secrets.randbelow(2**31 - 1) + 1
        self._event: Progress | None = None
        self._started = 0.0
        self._opened = 0.0
        # A status message another process had shown for this job (adapters/telegram/takeover.py)
        # is edited and deleted as this job's own.
        self._status: int | None = status
        #: The status message the job's ticket names (bot/handoff.py): the one kept when the
        #: job is handed over; one sent after the ticket was written would be left behind.
        self._recorded: int | None = status
        self._shown: str | None = None if status is None else ""
        self._shown_at = 0.0
        self._shown_stage: str | None = None
        self._next_action = 0.0
        self._retry_at = 0.0
        self._skips = 0
        self._gave_up = False
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def for_ticket(self) -> int | None:
        """The status message as a hand-over ticket records it (None: none sent yet)."""
        self._recorded = self._status
        return self._status

    @property
    def locale(self) -> str | None:
        """The user's language (status texts wait for it)."""
        return self._locale

    @locale.setter
    def locale(self, value: str | None) -> None:
        self._locale = value
        self._changed.set()

    async def __aenter__(self) -> StatusReporter:
        self._opened = time.monotonic()
        self._task = asyncio.create_task(self._loop(), name="telegram:progress")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._halt()
        # Handed over (this process stops while the job waits): the process that makes it
        # edits the same status message (takeover.py), so it stays.
        handed = isinstance(exc, HandedOver) and self._status == self._recorded
        if self._status is not None and not handed:
            with contextlib.suppress(TelegramError):
                await self._bot.delete_message(self._target.chat_id, self._status)

    async def _halt(self) -> None:
        """Stop the loop after the call it is making (a status message half sent is not lost)."""
        self._stop.set()
        self._changed.set()
        if self._task is not None:
            _, pending = await asyncio.wait({self._task}, timeout=10.0)
            for task in pending:
                task.cancel()
            self._task = None

    async def on_progress(self, event: Progress) -> None:
        """The core's progress callback: only records the state (the loop does the calls)."""
        self._event = event
        if event.stage == "started":
            self._started = time.monotonic()
        self._changed.set()

    def _text(self, now: float, step: float = 1.0) -> str | None:
        """The status line, its running time in ``step``-second steps; None before it is known."""
        if self._locale is None or self._event is None:
            return None
        running = now - self._started
        return self._api.progress_text(self._locale, self._event, running - running % step)

    async def _loop(self) -> None:
        with lane(Lane.STATUS):  # status messages never hold up anyone's result
            while not self._stop.is_set():
                now = time.monotonic()
                if self._drafting:
                    await self._draft(now)
                else:
                    await self._message(now)
                if self._shown is None and now - self._opened >= self._timing.feedback_grace:
                    await self._action(now)
                with contextlib.suppress(TimeoutError):  # or sooner: a new stage, the language
                    async with asyncio.timeout(self._next_look(now)):
                        await self._changed.wait()
                self._changed.clear()

    def _next_look(self, now: float) -> float:
        """Seconds until the loop has something to do, unless a progress event comes first."""
        timing = self._timing
        if self._shown is None:  # the feedback grace runs out, else the next try a tick later
            # (never sooner: a status the budget skips would spin the loop, and 500 of them
            # starved the event loop, results and all, in bench/bench_feedback.py's bursts)
            grace = self._opened + timing.feedback_grace - now
            return min(timing.tick, grace) if grace > 0 else timing.tick
        if not self._drafting:  # the status message's running time
            return timing.tick
        # A draft changes only with an event (which wakes the loop), a throttled queue place,
        # or its renewal, which also brings the next running-time step.
        since = now - self._shown_at
        queued = self._event is not None and self._event.stage == "queued"
        due = min(timing.draft_renew, timing.edit_interval) if queued else timing.draft_renew
        return due - since if due > since else timing.tick  # overdue: the last try failed

    async def _draft(self, now: float) -> None:
        """Send or renew the draft: "Thinking..." while the model works, the queue place before."""
        event, renew = self._event, self._timing.draft_renew
        if event is not None and event.stage in ("finished", "failed"):
            return  # the result (or the error) replaces the draft: nothing more to say
        if now < self._retry_at:
            return  # Telegram asked for a pause (the chat action stands in meanwhile)
        running = now - self._started if event is not None and event.stage == "started" else 0.0
        if event is not None and event.stage == "queued":
            text = self._text(now) or ""
        else:
            text = (self._text(now, renew) or "") if running >= renew else ""
        stage = event.stage if event is not None else None
        # A new stage, or words in place of the placeholder, show at once; a new queue place
        # or running time at most every edit_interval; the same text again before 30 s end.
        changed = text != self._shown and (
            stage != self._shown_stage or not self._shown
            or now - self._shown_at >= self._timing.edit_interval)
        due = self._shown is None or now - self._shown_at >= renew or changed
        if not due:
            return
        try:
            await self._bot.send_message_draft(self._target.chat_id, self._draft_id,
                                               markup(text), parse_mode=ParseMode.HTML,
                                               message_thread_id=self._target.thread_id)
        except RetryAfter as err:  # drafts have no documented limit, but bots do meet 429s
            # Counted from Telegram's answer, not from when the call left (``now``).
            self._retry_at = time.monotonic() + seconds(err.retry_after)
            return
        except BadRequest as err:
            log.info("telegram: drafts refused (%s); status messages instead", err)
            self._throttle.drafts = self._drafting = False
            return
        except TelegramError as err:
            log.debug("draft failed: %s", err)
            return
        self._shown, self._shown_at, self._shown_stage = text, now, stage

    async def _message(self, now: float) -> None:
        """Send the status message once its text is known; edit it when the text changes."""
        text = self._text(now)
        if text is None or self._gave_up or now < self._retry_at:
            return
        chat_id = self._target.chat_id
        try:
            if self._status is None:
                message = await self._bot.send_message(
                    chat_id, markup(text), parse_mode=ParseMode.HTML,
                    reply_parameters=self._target.reply,
                    message_thread_id=self._target.thread_id, disable_notification=True)
                self._status, self._shown, self._shown_at = message.message_id, text, now
                self._throttle.mark(chat_id, now)
            elif text != self._shown and self._throttle.ready(chat_id, self._interval, now):
                self._throttle.mark(chat_id, now)
                self._shown = text
                await self._bot.edit_message_text(markup(text), chat_id, self._status,
                                                  parse_mode=ParseMode.HTML)
        except Skipped:  # the budget is busy with results: try again later, backing off
            self._skips += 1
            self._retry_at = now + self._timing.tick * 2 ** min(self._skips, 2)
        except BadRequest as err:
            log.info("status message in %s: %s", chat_id, err)
            if self._status is not None and "not found" in str(err).lower():
                self._status = None  # deleted meanwhile (taken over from a stopped process)
                return
            self._gave_up = self._status is None
        except TelegramError as err:
            log.info("status message in %s: %s", chat_id, err)
            self._gave_up = self._status is None
        else:
            self._skips = 0

    async def _action(self, now: float) -> None:
        """Nothing else shows yet: the chat action does (again every few seconds)."""
        if now < self._next_action:
            return
        repeat = self._next_action > 0
        self._next_action = now + self._timing.action_interval
        if repeat and not self._throttle.may_repeat_action(now):
            return
        try:
            await self._bot.send_chat_action(self._target.chat_id, ChatAction.UPLOAD_PHOTO,
                                             message_thread_id=self._target.thread_id)
        except TelegramError as err:
            log.debug("chat action failed: %s", err)
