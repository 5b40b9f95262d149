"""/config in Telegram groups: anyone may read it; changes need a chat administrator.

Who is an administrator is asked of Telegram (getChatMember: status ``administrator`` or
``creator``, https://core.telegram.org/bots/api#getchatmember), never taken from the message.
"""

from __future__ import annotations

from typing import Any

from telegram import Message, Update
from telegram.constants import ChatMemberStatus
from telegram.ext import CommandHandler, ContextTypes

from adapters.telegram.runtime import Runtime, target_of
from adapters.telegram.translate import actor_of, chat_of, thread_of
from bot.domain import Actor
from bot.errors import NotAllowed
from bot.groups import describe

_ADMIN = (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)


class GroupConfig:
    """The /config command."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def handler(self) -> CommandHandler[Any, None]:
        """The PTB handler for /config."""
        return CommandHandler("config", self.on_config)

    async def on_config(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Read (no arguments) or change one setting."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or user.is_bot:
            return
        actor = actor_of(user)
        self.rt.run(self._config(message, actor, list(context.args or [])), actor,
                    target_of(message), "/config")

    async def _config(self, message: Message, actor: Actor, args: list[str]) -> None:
        if not self.rt.allowed(message.chat, actor):
            raise NotAllowed()
        chat = chat_of(message.chat, thread_of(message))
        admin = bool(args) and await self._is_admin(message.chat.id, int(actor.user_id))
        group = await self.rt.service.groups.configure(actor, chat, args, group_admin=admin)
        locale = await self.rt.locale(actor)
        text = describe(self.rt.t, locale, group)
        if args:
            text = self.rt.t(locale, "group.saved") + "\n\n" + text
        await self.rt.renderer.text(target_of(message), text)

    async def _is_admin(self, chat_id: int, user_id: int) -> bool:
        member = await self.rt.bot.get_chat_member(chat_id, user_id)
        return member.status in _ADMIN
