"""What every handler is given: the port, the bot, the sender, background tasks and the one guard.

The guard (:meth:`Runtime.guarded`) is the adapter's only place that turns a failure into words:
a :class:`~bot.api.BotError` is shown as :meth:`BotApi.error_reply` words, anything else is
logged under a fresh InternalError id and shown as that. A button press's failure is its answer
(a toast) until the press was answered, a message in the chat after that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot, CallbackQuery

from adapters.base import drain
from adapters.telegram.deliver import Sender, clip
from adapters.telegram.inbound import Target
from adapters.telegram.progress import StatusReporter, Throttle, Timing
from adapters.telegram.widgets import ANSWER_LIMIT
from bot.api import Actor, BotApi, BotError, InternalError, TelegramSection

log = logging.getLogger(__name__)

Work = Coroutine[Any, Any, None]


class TaskSet:
    """Background work the adapter owns, so shutdown can wait for it (bounded) or cancel it."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Work, name: str) -> None:
        """Run ``work`` in its own task."""
        task = asyncio.get_running_loop().create_task(work, name=f"telegram:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("telegram task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` s for running work, then cancel what is left."""
        await drain(set(self._tasks), grace)


@dataclass(slots=True)
class Press:
    """A button press: answered once (a toast, or an alert); a failure before that is the answer."""

    query: CallbackQuery
    #: Whether a failure is shown as an alert (a dialog to dismiss) rather than a toast.
    alert: bool = False
    answered: bool = False

    async def answer(self, text: str | None = None, *, alert: bool = False) -> None:
        """Answer the press (Telegram keeps the button spinning until this)."""
        self.answered = True
        await self.query.answer(clip(text, ANSWER_LIMIT) if text else None, show_alert=alert)


@dataclass(slots=True)
class Runtime:
    """Shared state of one running adapter, handed to every handler."""

    api: BotApi
    bot: Bot
    #: The ``[telegram]`` settings section.
    config: TelegramSection
    send: Sender
    timing: Timing = field(default_factory=Timing)
    throttle: Throttle = field(default_factory=Throttle)
    tasks: TaskSet = field(default_factory=TaskSet)

    @property
    def username(self) -> str:
        """The bot's @username (known after initialize)."""
        return self.bot.username

    def allowed(self, chat_id: int, actor: Actor) -> bool:
        """Whether the chat is on ``telegram.allowed_chats`` (admins may use the bot anywhere)."""
        allowed = self.config.allowed_chats
        return not allowed or chat_id in allowed or self.api.is_admin(actor)

    def reporter(self, target: Target, locale: str | None = None,
                 status: int | None = None) -> StatusReporter:
        """Progress display for one job (``status``: a status message it takes over)."""
        return StatusReporter(self.bot, self.api, target, locale, self.timing, self.throttle,
                              status)

    def run(self, work: Work, actor: Actor, target: Target, name: str,
            press: Press | None = None) -> None:
        """Run ``work`` in the background under the guard."""
        self.tasks.spawn(self.guarded(work, actor, target, press), name)

    async def guarded(self, work: Work, actor: Actor, target: Target,
                      press: Press | None = None) -> None:
        """Await ``work``; a failure becomes one translated answer, never a traceback."""
        try:
            await work
        except BotError as err:
            await self._tell(actor, target, press, err)
        except Exception:
            internal = InternalError()
            log.exception("internal error %s (telegram, %s)", internal.error_id, actor.key)
            await self._tell(actor, target, press, internal)

    async def _tell(self, actor: Actor, target: Target, press: Press | None,
                    err: BotError) -> None:
        """Show ``err`` as the press's answer or a message in the chat; never raises."""
        try:
            text = (await self.api.error_reply(actor, err)).text
            if press is not None and not press.answered:
                await press.answer(text, alert=press.alert)
            elif text:  # empty: a ban this user was told about already
                await self.send.text(target, text)
        except Exception:
            log.exception("could not tell %s about %s", actor.key, err.key)
