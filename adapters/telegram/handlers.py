"""Prompts, photos, albums, reply-edits and result buttons: translate, call the core, deliver."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from telegram import Message, Update
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from adapters.telegram.albums_redis import album_collector
from adapters.telegram.creating import Creating
from adapters.telegram.inbound import (
    DOWNLOAD_LIMIT,
    PLATFORM,
    Attachment,
    Target,
    actor_of,
    attachment_of,
    chat_of,
    download,
    parse_command,
    press_target,
    primary,
    ref_of,
    replied,
    target_of,
    text_of,
    thread_of,
)
from adapters.telegram.runtime import Press, Runtime
from adapters.telegram.takeover import handoff
from bot.api import Action, Actor, ChatRef, EmptyPrompt, ImageRequest, NotAllowed, parse_flags


@dataclass(frozen=True, slots=True)
class Pressed:
    """A result button pressed: by whom, in which chat, under which message."""

    press: Press
    action: Action
    actor: Actor
    chat: ChatRef
    target: Target


ButtonHandler = Callable[[Pressed], Awaitable[None]]


class ImagineHandlers:
    """Everything that starts a generation, and the buttons under a result."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.albums = album_collector(rt, self._batch)
        self.creating = Creating(rt)
        #: What each result button does (Action.kind -> handler; the core judges any other kind).
        self.buttons: dict[str, ButtonHandler] = {
            "reroll": self._act, "upscale": self._act, "variations": self._act,
            "edit": self._edit_hint, "delete": self._delete}

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Any message that is not one of the simple commands."""
        message = update.message
        if message is None or message.from_user is None or message.from_user.is_bot:
            return
        if message.media_group_id:
            self.albums.add(message)
        else:
            self.rt.tasks.spawn(self._batch([message]), "message")

    async def _batch(self, messages: list[Message]) -> None:
        head = primary(messages)
        if head.from_user is None:
            return
        actor = actor_of(head.from_user)
        await self.rt.guarded(self._handle(messages, actor), actor, target_of(head))

    async def _handle(self, messages: list[Message], actor: Actor) -> None:
        rt, api = self.rt, self.rt.api
        head = primary(messages)
        text = text_of(head)
        command = parse_command(text, rt.username)
        if command is not None and command.for_us and command.name in ("describe", "history"):
            if not rt.allowed(head.chat.id, actor):
                raise NotAllowed()
            target, chat = target_of(head), chat_of(head.chat, thread_of(head))
            if command.name == "history":
                await self.creating.history(actor, target)
            else:
                await self.creating.describe(messages, replied(messages), actor, chat, target)
            return
        if command is not None and not (command.for_us and command.name == "imagine"):
            return
        if not rt.allowed(head.chat.id, actor):
            if command is not None:
                raise NotAllowed()
            return
        reply = replied(messages)
        bound = reply is not None and await api.turn_for(ref_of(reply)) is not None
        if bound and command is None and not (await api.group(chat_of(head.chat))).reply_edits:
            return  # the group's admins turned reply edits off (/config reply-edits off)
        reply_file = attachment_of(reply) if reply is not None and not bound else None
        files = [a for a in map(attachment_of, messages) if a is not None]
        from_me = reply is not None and reply.from_user is not None and (
            reply.from_user.id == rt.bot.id)
        private_text = head.chat.type == ChatType.PRIVATE and rt.config.private_plain_text
        if command is not None:
            prompt = command.args
            if not prompt and reply is not None and reply_file is None and not bound:
                prompt = reply.text or ""  # /imagine in reply to a text: that text is the prompt
        elif (from_me and (bound or reply_file)) or private_text:
            prompt = text
        else:
            return
        target = target_of(head)
        if command is None and not prompt.strip():
            if files or reply_file:
                locale = await api.locale_for(actor)
                await rt.send.text(target, api.t(locale, "telegram.photo_needs_caption"))
            return
        prompt, options = parse_flags(prompt)
        if not prompt:
            raise EmptyPrompt()
        # The chat action goes out first: under load every store lookup waits its turn, and the
        # user should see at once that the bot is on it (the language is only needed later).
        async with rt.reporter(target) as status:
            status.locale = await api.locale_for(actor)
            sources: list[Attachment] = [*([reply_file] if reply_file else []), *files]
            limit = min(DOWNLOAD_LIMIT, int(api.settings.limits.max_input_mb * 1_000_000))
            references = await download(rt.bot, sources, limit)
            request = ImageRequest(actor=actor, chat=chat_of(head.chat, thread_of(head)),
                                   prompt=prompt, references=references, options=options)
            # Should this process stop while the job waits, another makes it (takeover.py).
            place = handoff(target, status)
            if bound and reply is not None:
                result = await api.edit(request, ref_of(reply), status.on_progress, place)
            elif reply_file is not None or (references and command is None):
                result = await api.edit(request, None, status.on_progress, place)
            else:
                result = await api.imagine(request, status.on_progress, place)
            await self.creating.deliver(result, target)  # the chat action covers the upload too

    # ----- result buttons ----------------------------------------------------------------------

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A result button (``ib:...`` callback data)."""
        query = update.callback_query
        action = Action.decode(query.data or "") if query is not None else None
        target = press_target(query) if query is not None else None
        if query is None or query.message is None or action is None or target is None:
            return
        actor = actor_of(query.from_user)
        press = Press(query)
        pressed = Pressed(press, action, actor, chat_of(query.message.chat, target.thread_id),
                          target)
        self.rt.run(self._press(pressed), actor, target, "button", press)

    async def _press(self, pressed: Pressed) -> None:
        if not self.rt.allowed(pressed.target.chat_id, pressed.actor):
            raise NotAllowed()
        await self.rt.api.owned(pressed.actor, pressed.action.turn_id)
        await self.buttons.get(pressed.action.kind, self._act)(pressed)

    async def _act(self, pressed: Pressed) -> None:
        """Reroll, upscale, variations: a new job from the result."""
        api = self.rt.api
        await pressed.press.answer()
        locale = await api.locale_for(pressed.actor)
        async with self.rt.reporter(pressed.target, locale) as status:
            result = await api.act(pressed.actor, pressed.chat, pressed.action, status.on_progress,
                                   handoff(pressed.target, status))
            await self.creating.deliver(result, pressed.target)

    async def _edit_hint(self, pressed: Pressed) -> None:
        """Edit: Telegram has no form, so the answer says to reply to the result."""
        locale = await self.rt.api.locale_for(pressed.actor)
        await pressed.press.answer(self.rt.api.t(locale, "telegram.edit_hint"), alert=True)

    async def _delete(self, pressed: Pressed) -> None:
        """Delete the turn and its messages (the buttons go when a message cannot)."""
        api, query = self.rt.api, pressed.press.query
        refs = await api.delete(pressed.actor, pressed.action.turn_id)
        locale = await api.locale_for(pressed.actor)
        await pressed.press.answer(api.t(locale, "result.deleted"))
        shown = [(int(r.chat_id), int(r.message_id)) for r in refs if r.platform == PLATFORM]
        if not await self.rt.send.delete(shown) and isinstance(query.message, Message):
            with contextlib.suppress(TelegramError):
                await query.message.edit_reply_markup(None)

    def close(self) -> None:
        """Drop albums still being collected."""
        self.albums.cancel()
