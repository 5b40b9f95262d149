"""The core's job calls as a test reads them: a BotError comes back as the error Reply shown."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from bot.bootstrap import Core
from bot.domain import Action, Actor, ChatRef, ImageRequest, MessageRef, Reply
from bot.errors import BotError


class Jobs:
    """``core.service`` with imagine/edit/act answering an error Reply, as an adapter's guard does."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core.service, name)

    async def _shown(self, actor: Actor, work: Awaitable[Reply]) -> Reply:
        """``await work``, or the error Reply an adapter's guard would show for its BotError."""
        try:
            return await work
        except BotError as err:
            return await self._core.api.error_reply(actor, err)

    async def imagine(self, request: ImageRequest, progress: Any = None) -> Reply:
        """``service.imagine``; a refusal as its Reply."""
        return await self._shown(request.actor, self._core.service.imagine(request, progress))

    async def edit(self, request: ImageRequest, reply_to: MessageRef | None = None,
                   progress: Any = None) -> Reply:
        """``service.edit``; a refusal as its Reply."""
        return await self._shown(request.actor, self._core.service.edit(request, reply_to, progress))

    async def act(self, actor: Actor, chat: ChatRef, action: Action, progress: Any = None) -> Reply:
        """``service.act``; a refusal as its Reply."""
        return await self._shown(actor, self._core.service.act(actor, chat, action, progress))


def jobs(core: Core) -> Jobs:
    """``core``'s job calls in the error-Reply form tests assert on."""
    return Jobs(core)
