"""Telegram's shared sending budget, spent on what users wait for first.

Telegram lets a bot send about 30 messages a second in all (and 20 a minute per group). PTB's
``AIORateLimiter`` enforces that for every call that names a chat, in arrival order. Under a
flood that order is wrong for us: a status message ("Generating… 12 s") or its edit would queue
ahead of another user's finished image, and the longer results wait the more status traffic
they cause. So:

- chat actions (:data:`UNMETERED`) are not messages and go straight out: they are the user's
  first sign that the bot is on it;
- calls made while :data:`BEST_EFFORT` is set (the progress display) use only the spare half
  of the budget, and only while nobody waits for it; otherwise they raise :class:`Skipped` at
  once and the caller tries again later or not at all (half, because a status message that is
  sent must later be deleted, and that deletion is not optional);
- everything else (results, answers, deletions) waits its turn as before, 429s included.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from aiolimiter import AsyncLimiter
from telegram.constants import FloodLimit
from telegram.error import TelegramError
from telegram.ext import AIORateLimiter

#: Bot API methods outside the message budget.
UNMETERED = frozenset({"sendChatAction"})
#: Set (in its own task) by code whose calls may be dropped when the budget is in use.
BEST_EFFORT: ContextVar[bool] = ContextVar("telegram_best_effort", default=False)


class Skipped(TelegramError):
    """A best-effort call that was not made because results are waiting for the budget."""


class RateLimiter(AIORateLimiter):
    """PTB's limiter with chat actions exempt and best-effort calls that never queue."""

    def __init__(self, *, max_retries: int = 0,
                 overall_max_rate: float = FloodLimit.MESSAGES_PER_SECOND) -> None:
        # The overall budget is kept here (the parent keeps only the per-group one and the
        # handling of 429s) so that best-effort calls can look at it without waiting.
        super().__init__(overall_max_rate=0, max_retries=max_retries)
        self._overall = AsyncLimiter(overall_max_rate, 1)
        self._waiting = 0

    async def process_request(self, callback: Any, args: Any, kwargs: dict[str, Any],
                              endpoint: str, data: dict[str, Any],
                              rate_limit_args: int | None) -> Any:
        """Run one Bot API call under the limits."""
        if endpoint in UNMETERED:
            return await callback(*args, **kwargs)
        if data.get("chat_id") is None:  # not a message (e.g. answerCallbackQuery)
            return await super().process_request(callback, args, kwargs, endpoint, data,
                                                 rate_limit_args)
        spare = self._overall.max_rate / 2
        if BEST_EFFORT.get() and (self._waiting or not self._overall.has_capacity(spare)):
            raise Skipped(f"{endpoint} skipped: the sending budget is in use")
        self._waiting += 1
        try:
            await self._overall.acquire()
        finally:
            self._waiting -= 1
        return await super().process_request(callback, args, kwargs, endpoint, data,
                                             rate_limit_args)
