"""A result's send cancelled on its way (shutdown) is let land: Telegram may have it already.

Cancelling the upload does not take it back: once the request left, Telegram may show the photo
while this process never hears of it, and the parked copy (bot/outbox.py) would go out again
after the restart, a second photo the user did not ask for. So the call is awaited still, and
the caller learns of both: the cancellation, and the message that arrived (:class:`Landed`).
The wait is bounded by python-telegram-bot's own read and write timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


class Landed(asyncio.CancelledError):
    """A result's call cancelled after it left, let land: ``answer`` is Telegram's ``result``."""

    def __init__(self, answer: Any) -> None:
        super().__init__("cancelled after the call landed")
        self.answer = answer


async def landing(call: Awaitable[Any]) -> Any:
    """``call``; cancelled on its way, it is awaited still, and :class:`Landed` if it arrived."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError as stop:
        try:
            answer = await task
        except Exception:
            raise stop from None
        raise Landed(answer) from None
