"""Telegram's sending limits as one budget, spent on what users wait for first.

Telegram documents three limits (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-
how-do-i-avoid-this): about one message a second per chat ("We may allow short bursts"), 20
messages a minute per group, and about 30 a second in all; past them it answers 429 with
``retry_after`` (https://core.telegram.org/bots/api#responseparameters). Paid broadcasts raise the
overall limit to 1000 a second at 0.1 Star a message (``allow_paid_broadcast``,
https://core.telegram.org/bots/api#sendmessage; PTB's ``FloodLimit.PAID_MESSAGES_PER_SECOND``).
Each limit is a pace here (GCRA: a rate and a short burst), kept under Telegram's own so that
uploads arriving closer together than they left do not trip it. Telegram counts a message when it
arrives, not when we let it go: a stall on the way (this process's event loop busy reading
answers, a slow link) delivers every upload granted meanwhile at once, and bench/bench_e2e.py's
burst of 500 drew 12-23 429s that way in every run. So at most ``in_flight`` free sends are on
their way at once; a bunch can never be larger than that.

Who goes first when the budget is short is the :class:`Lane`: a finished, paid-for image
(``RESULT``) before an answer (``REPLY``), and a progress update (``STATUS``) only from what is
spare: it is never queued, it is skipped (:class:`Skipped`) and the caller tries again later or
not at all. Waiting results go in the order their images were ready (``Reply.ready_at``, given
with :func:`lane`), not the order they reached the queue: one that took longer to store or
fit does not lose its place to a newer one, so the k-th result ready is about the k-th sent.

Chat actions and drafts are typing indicators, not messages (a draft is MTProto's
``sendMessageTextDraftAction``, https://core.telegram.org/constructor/sendMessageTextDraftAction),
and deletions send nothing: they go straight out.

A 429 is also news about the limits: in a group it holds that group back for ``retry_after``; in
a private chat (where we send a message or two per job) it can only be the overall limit, so
everything waits that long. A lone burst of 429s is taken for uploads that arrived bunched; when
they come back within a minute, Telegram's limit is lower than ours: the overall rate drops by a
fifth, creeping back after a quiet minute (cutting at the first one kept a burst of 500 at 22/s).
A ``REPLY`` is then tried again a few times; a ``RESULT`` is handed back to the sender, which
waits as long as the result is worth delivering (deliver.py); cancelled on its way, it lands first
(landing.py).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from enum import IntEnum
from typing import Any

from telegram.error import RetryAfter, TelegramError
from telegram.ext import BaseRateLimiter

from adapters.telegram.landing import landing

log = logging.getLogger(__name__)

#: Bot API methods that send or change a message: they spend the budget.
METERED = frozenset({
    "sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup", "sendAnimation", "sendVideo",
    "sendAudio", "sendVoice", "sendSticker", "copyMessage", "forwardMessage", "editMessageText",
    "editMessageCaption", "editMessageMedia", "editMessageReplyMarkup"})
Chat = int | str | None
#: Typing indicators (a draft is one too): not messages, sent without the budget, but at most
#: this many at once, so that a crowd's feedback never fills python-telegram-bot's pool of 256
#: connections that results need (a result waiting for a connection is not lost, but waits).
INDICATORS = frozenset({"sendChatAction", "sendMessageDraft"})
INDICATORS_AT_ONCE = 64


class Lane(IntEnum):
    """Who a call is for, most urgent first."""

    RESULT = 0
    REPLY = 1
    STATUS = 2


#: The lane of the calls a task makes (set with :func:`lane`; unset: a reply).
LANE: ContextVar[Lane] = ContextVar("telegram_lane", default=Lane.REPLY)
#: When the image a task sends was ready (epoch seconds; None: when the call queues).
READY: ContextVar[float | None] = ContextVar("telegram_ready", default=None)


@contextlib.contextmanager
def lane(which: Lane, ready: float | None = None) -> Iterator[None]:
    """Calls made inside the block go in ``which`` lane, queued by ``ready`` (see the docstring)."""
    token, when = LANE.set(which), READY.set(ready)
    try:
        yield
    finally:
        READY.reset(when)
        LANE.reset(token)


class Skipped(TelegramError):
    """A status call not made: others wait for the budget, or nothing is spare."""


def seconds(value: int | float | timedelta) -> float:
    """A ``retry_after`` (an int, or a timedelta under PTB's newer setting) in seconds."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, slots=True)
class Limits:
    """The paces kept (under Telegram's documented ones, see the module docstring)."""

    #: 5% under Telegram's 30: a backlog sent at exactly 30 a second keeps Telegram's bucket
    #: where our first burst left it, with no room for uploads that arrive closer together than
    #: they left (a 1.5 MB photo takes 20 ms to seconds on its way under load); at 28.5 the
    #: room grows back by 1.5 a second.
    rate: float = 28.5
    #: A quarter second's worth: a send granted late (a busy event loop) catches up. With
    #: ``in_flight`` it bounds what can reach Telegram at once to 20, under its ~30 saved up.
    burst: int = 8
    #: Free sends granted and not yet answered, at most: 28.5/s needs 12 only when a call
    #: takes over 0.4 s (a 1.5 MB photo over a slow link), and then the link is the bound.
    in_flight: int = 12
    paid_rate: float = 1000.0
    chat_per_second: float = 1.0
    chat_burst: int = 2
    group_per_minute: float = 20.0
    group_burst: int = 5
    #: The overall rate never drops below this after 429s.
    min_rate: float = 5.0


class Pace:
    """GCRA: ``per_second`` sends, ``burst`` of them back to back; one float of state."""

    __slots__ = ("interval", "slack", "tat")

    def __init__(self, per_second: float, burst: int) -> None:
        self.interval = 1.0 / per_second
        self.slack = self.interval * (burst - 1)
        self.tat = 0.0

    def wait(self, now: float) -> float:
        """Seconds until the next send may go (0: now)."""
        return max(0.0, self.tat - self.slack - now)

    def spare(self, now: float) -> bool:
        """True when two sends may go now: one can be given away and one still kept."""
        return max(self.tat, now) + self.interval - self.slack <= now

    def take(self, now: float) -> None:
        """Record a send."""
        self.tat = max(self.tat, now) + self.interval

    def hold(self, until: float) -> None:
        """Nothing goes before ``until``."""
        self.tat = max(self.tat, until + self.slack)


@dataclass(eq=False, slots=True)
class _Waiter:
    chat: Chat
    paid: bool
    future: asyncio.Future[None]
    #: Its place in the lane: when its image was ready, else when it queued (epoch seconds).
    ready: float


def is_group(chat: Chat) -> bool:
    """Groups, supergroups and channels have negative ids (or an @name)."""
    return not isinstance(chat, int) or chat < 0


class SendBudget:
    """The paces, the waiting sends by lane, and the one task that lets them go in order."""

    def __init__(self, limits: Limits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or Limits()
        self.rate = self.limits.rate
        self._clock = clock
        self._free = Pace(self.rate, self.limits.burst)
        self._paid = Pace(self.limits.paid_rate, self.limits.burst)
        self._chats: dict[Chat, tuple[Pace, ...]] = {}
        self._queues: tuple[list[_Waiter], ...] = tuple([] for _ in Lane)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_flood = -math.inf
        self._last_burst = -math.inf
        #: Free sends granted and not yet answered.
        self.flying = 0
        #: Sends let through by lane, status calls skipped, 429s seen.
        self.sent: Counter[str] = Counter()

    # ----- the paces ---------------------------------------------------------------------------

    def _paces(self, chat: Chat, now: float) -> tuple[Pace, ...]:
        paces = self._chats.get(chat)
        if paces is None:
            if len(self._chats) > 10_000:  # forget chats whose paces are back to rest
                self._chats = {c: p for c, p in self._chats.items()
                               if any(x.tat > now for x in p)}
            one = Pace(self.limits.chat_per_second, self.limits.chat_burst)
            group = Pace(self.limits.group_per_minute / 60, self.limits.group_burst)
            paces = self._chats[chat] = (one, group) if is_group(chat) else (one,)
        return paces

    def _wait(self, chat: Chat, paid: bool, now: float) -> float:
        if not paid and self.flying >= self.limits.in_flight:
            return math.inf  # until one lands (landed() wakes the dispatcher)
        overall = self._paid if paid else self._free
        return max(overall.wait(now), *(p.wait(now) for p in self._paces(chat, now)))

    def _take(self, chat: Chat, paid: bool, now: float, which: Lane) -> None:
        if not paid and self.rate < self.limits.rate and now - self._last_flood > 60:
            self._set_rate(min(self.limits.rate, self.rate + self.limits.rate / 10))
            self._last_flood = now - 50  # the next step up after another quiet 10 s
        (self._paid if paid else self._free).take(now)
        self.flying += not paid
        for pace in self._paces(chat, now):
            pace.take(now)
        self.sent[which.name.lower()] += 1

    def _set_rate(self, rate: float) -> None:
        self.rate = rate
        self._free.interval = 1.0 / rate
        self._free.slack = self._free.interval * (self.limits.burst - 1)

    # ----- what callers use --------------------------------------------------------------------

    def waiting(self, upto: Lane = Lane.STATUS) -> int:
        """Sends queued in ``upto`` and every more urgent lane."""
        return sum(len(q) for q in self._queues[:upto + 1])

    def backlog_seconds(self) -> float:
        """About how long a result queued now would wait for the overall limit."""
        now = self._clock()
        return self._free.wait(now) + self.waiting(Lane.RESULT) * self._free.interval

    def try_take(self, chat: Chat, which: Lane = Lane.STATUS) -> bool:
        """Take a send at once if nobody waits and every pace has one to spare; else False."""
        now = self._clock()
        if (self.waiting() or self.flying >= self.limits.in_flight - 1
                or not all(p.spare(now) for p in (self._free, *self._paces(chat, now)))):
            self.sent["skipped"] += 1
            return False
        self._take(chat, False, now, which)
        return True

    async def take(self, chat: Chat, which: Lane, paid: bool = False,
                   ready: float | None = None) -> None:
        """Wait for a send's turn: its lane's order, its chat's pace, the overall pace.

        ``ready``: when the image it sends was ready (epoch seconds); the lane is served in
        that order, a call without it counting as ready when it queues.
        """
        now = self._clock()
        if not self.waiting(which) and self._wait(chat, paid, now) == 0:
            self._take(chat, paid, now, which)
            return
        waiter = _Waiter(chat, paid, asyncio.get_running_loop().create_future(),
                         time.time() if ready is None else ready)
        # After every waiter ready at the same moment or before (ties keep their arrival order).
        bisect.insort_right(self._queues[which], waiter, key=lambda w: w.ready)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._dispatch(), name="telegram:send-budget")
        self._wake.set()
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.landed(paid)  # granted, then cancelled before the call went out
            raise

    def landed(self, paid: bool = False) -> None:
        """A send :meth:`take` granted was answered (or never went out)."""
        if not paid:
            self.flying -= 1
            if self.waiting():
                self._wake.set()

    @contextlib.asynccontextmanager
    async def sending(self, chat: Chat, which: Lane, paid: bool = False,
                      ready: float | None = None) -> AsyncIterator[None]:
        """:meth:`take`, then the block (the call), then :meth:`landed`."""
        await self.take(chat, which, paid, ready)
        try:
            yield
        finally:
            self.landed(paid)

    def flooded(self, chat: Chat, retry_after: float) -> None:
        """Telegram answered 429: hold back the group, or everything (see the module docstring)."""
        now = self._clock()
        self.sent["flooded"] += 1
        for pace in self._paces(chat, now):
            pace.hold(now + retry_after)
        if not is_group(chat):
            self._free.hold(now + retry_after)
            if now - self._last_flood > 1.0:  # a new burst of 429s
                if now - self._last_burst < 60:
                    self._set_rate(max(self.limits.min_rate, self.rate * 0.8))
                log.warning("telegram: 429 (retry after %.0f s); sending %.0f messages/s for now",
                            retry_after, self.rate)
                self._last_burst = now
            self._last_flood = now
        self._wake.set()

    async def _dispatch(self) -> None:
        """Let queued sends go, most urgent lane first, each when its chat and the total allow."""
        while any(self._queues):
            now = self._clock()
            waiter, which, soonest = self._next(now)
            if waiter is not None:
                self._take(waiter.chat, waiter.paid, now, which)
                waiter.future.set_result(None)
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), soonest if soonest < math.inf else None)

    def _next(self, now: float) -> tuple[_Waiter | None, Lane, float]:
        """The first waiter that may go now, taken off its queue; else when one may (inf: never).

        The overall paces are read once per round: while the free one is spent (a backlog),
        each free waiter costs one attribute check, not a look at its chat's paces (py-spy: the
        scan of 500 waiting results per grant was 4% of the bot's GIL time in a burst).
        """
        free = math.inf if self.flying >= self.limits.in_flight else self._free.wait(now)
        paid, soonest = self._paid.wait(now), math.inf
        for which, queue in zip(Lane, self._queues, strict=True):
            i = 0
            while i < len(queue):
                waiter = queue[i]
                if waiter.future.done():  # its caller was cancelled
                    del queue[i]
                    continue
                overall = paid if waiter.paid else free
                wait = overall if overall > 0 else max(
                    p.wait(now) for p in self._paces(waiter.chat, now))
                if wait == 0:
                    del queue[i]
                    return waiter, which, 0.0
                soonest = min(soonest, wait)
                i += 1
        return None, Lane.STATUS, soonest

    def close(self) -> None:
        """Stop the dispatcher (shutdown); queued callers are cancelled."""
        for queue in self._queues:
            for waiter in queue:
                waiter.future.cancel()
            queue.clear()
        if self._task is not None:
            self._task.cancel()


class RateLimiter(BaseRateLimiter[int]):
    """PTB's hook: every metered Bot API call goes through the :class:`SendBudget`."""

    def __init__(self, budget: SendBudget, *, reply_retries: int = 3) -> None:
        self.budget = budget
        self.reply_retries = reply_retries
        self._indicators = asyncio.Semaphore(INDICATORS_AT_ONCE)

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Let go of queued calls."""
        self.budget.close()

    async def process_request(self, callback: Any, args: Any, kwargs: dict[str, Any],
                              endpoint: str, data: dict[str, Any],
                              rate_limit_args: int | None) -> Any:
        """Run one Bot API call in its lane."""
        if endpoint in INDICATORS:
            async with self._indicators:
                return await callback(*args, **kwargs)
        if endpoint not in METERED:
            return await callback(*args, **kwargs)
        chat, which, ready = data.get("chat_id"), LANE.get(), READY.get()
        paid = bool(data.get("allow_paid_broadcast"))
        for attempt in range(self.reply_retries + 1):
            if which is Lane.STATUS:
                if not self.budget.try_take(chat):
                    raise Skipped(f"{endpoint} skipped: the sending budget is in use")
            else:
                await self.budget.take(chat, which, paid, ready)
            try:
                call = callback(*args, **kwargs)
                return await (landing(call) if which is Lane.RESULT else call)
            except RetryAfter as err:
                self.budget.flooded(chat, seconds(err.retry_after))
                if which is not Lane.REPLY or attempt == self.reply_retries:
                    raise
            finally:
                self.budget.landed(paid)
        raise AssertionError("unreachable")
