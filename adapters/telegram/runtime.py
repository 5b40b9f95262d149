"""What every handler shares: the core, the bot, the renderer, tracked tasks, error replies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot, Chat, Message

from adapters.telegram.progress import StatusReporter, Throttle, Timing
from adapters.telegram.render import Renderer, Target
from adapters.telegram.translate import thread_of
from bot.bootstrap import Core
from bot.domain import Actor
from bot.errors import BotError, InternalError
from bot.service import ImagineService

log = logging.getLogger(__name__)


class TaskSet:
    """Background work the adapter owns, so shutdown can wait for it (bounded) or cancel it."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
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
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)


def target_of(message: Message) -> Target:
    """Answer ``message`` in its chat and forum topic."""
    return Target(message.chat_id, message.message_id, thread_of(message))


@dataclass(slots=True)
class Runtime:
    """Shared state of one running adapter."""

    core: Core
    bot: Bot
    renderer: Renderer
    timing: Timing = field(default_factory=Timing)
    throttle: Throttle = field(default_factory=Throttle)
    tasks: TaskSet = field(default_factory=TaskSet)

    @property
    def service(self) -> ImagineService:
        """The core facade."""
        return self.core.service

    @property
    def username(self) -> str:
        """The bot's @username (known after initialize)."""
        return self.bot.username

    def t(self, locale: str, key: str, /, **params: object) -> str:
        """Catalog text in ``locale``."""
        return self.core.messages.t(locale, key, **params)

    async def locale(self, actor: Actor) -> str:
        """The actor's language."""
        return await self.service.locale_for(actor)

    def allowed(self, chat: Chat, actor: Actor) -> bool:
        """Whether the chat is on ``telegram.allowed_chats`` (admins may use the bot anywhere)."""
        allowed = self.core.settings.telegram.allowed_chats
        return not allowed or chat.id in allowed or self.service.is_admin(actor)

    def reporter(self, target: Target, locale: str | None = None) -> StatusReporter:
        """Progress display for one job."""
        return StatusReporter(self.bot, target, self.core.messages, locale, self.timing,
                              self.throttle)

    def run(self, work: Coroutine[Any, Any, None], actor: Actor, target: Target,
            name: str) -> None:
        """Run ``work`` in the background; any failure becomes one translated reply."""
        self.tasks.spawn(self.guarded(work, actor, target), name)

    async def guarded(self, work: Coroutine[Any, Any, None], actor: Actor,
                      target: Target) -> None:
        """Await ``work``; a failure becomes one translated reply, never a traceback."""
        try:
            await work
        except BotError as err:
            await self.tell(actor, target, err)
        except Exception:
            internal = InternalError()
            log.exception("internal error %s (telegram, %s)", internal.error_id, actor.key)
            await self.tell(actor, target, internal)

    async def tell(self, actor: Actor, target: Target, err: BotError) -> None:
        """Send the translated text of ``err``; never raises."""
        try:
            reply = await self.core.api.error_reply(actor, err)
            if reply.text:  # empty: a ban this user was told about already
                await self.renderer.text(target, reply.text)
        except Exception:
            log.exception("could not tell %s about %s", actor.key, err.key)
