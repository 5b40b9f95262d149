"""Prompts, photos, albums, reply-edits and result buttons: translate, call the core, render."""

from __future__ import annotations

import contextlib

from telegram import Message, Update
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from adapters.telegram.albums import AlbumCollector
from adapters.telegram.render import Target, clip, delete_all
from adapters.telegram.runtime import Runtime, target_of
from adapters.telegram.translate import (
    DOWNLOAD_LIMIT,
    Attachment,
    actor_of,
    attachment_of,
    chat_of,
    download,
    parse_command,
    primary,
    ref_of,
    replied,
    text_of,
    thread_of,
)
from bot.domain import Action, Actor, ImageRequest
from bot.errors import BotError, EmptyPrompt, NotAllowed
from bot.prompts import parse_flags

#: Telegram shows at most 200 characters in a callback answer.
ANSWER_LIMIT = 200


class ImagineHandlers:
    """Everything that starts a generation."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.albums = AlbumCollector(rt.core.settings.telegram.album_debounce_seconds,
                                     self._batch, rt.tasks.spawn)

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
        rt = self.rt
        head = primary(messages)
        text = text_of(head)
        command = parse_command(text, rt.username)
        if command is not None and not (command.for_us and command.name == "imagine"):
            return
        if not rt.allowed(head.chat, actor):
            if command is not None:
                raise NotAllowed()
            return
        reply = replied(messages)
        bound = reply is not None and await rt.service.turn_for(ref_of(reply)) is not None
        if bound and command is None and not (await rt.service.groups.get(chat_of(head.chat))).reply_edits:
            return  # the group's admins turned reply edits off (/config reply-edits off)
        reply_file = attachment_of(reply) if reply is not None and not bound else None
        files = [a for a in map(attachment_of, messages) if a is not None]
        from_me = reply is not None and reply.from_user is not None and (
            reply.from_user.id == rt.bot.id)
        private_text = (head.chat.type == ChatType.PRIVATE
                        and rt.core.settings.telegram.private_plain_text)
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
                locale = await rt.locale(actor)
                await rt.renderer.text(target, rt.t(locale, "telegram.photo_needs_caption"))
            return
        prompt, options = parse_flags(prompt)
        if not prompt:
            raise EmptyPrompt()
        # The chat action goes out first: under load every store lookup waits its turn, and the
        # user should see at once that the bot is on it (the language is only needed later).
        async with rt.reporter(target) as status:
            status.locale = await rt.locale(actor)
            sources: list[Attachment] = [*([reply_file] if reply_file else []), *files]
            limit = min(DOWNLOAD_LIMIT, int(rt.core.settings.limits.max_input_mb * 1_000_000))
            references = await download(rt.bot, sources, limit)
            request = ImageRequest(actor=actor, chat=chat_of(head.chat, thread_of(head)), prompt=prompt,
                                   references=references, options=options)
            if bound and reply is not None:
                result = await rt.service.edit(request, ref_of(reply), status.on_progress)
            elif reply_file is not None or (references and command is None):
                result = await rt.service.edit(request, None, status.on_progress)
            else:
                result = await rt.service.imagine(request, status.on_progress)
            await rt.renderer.deliver(result, target)  # the chat action covers the upload too

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A result button (``ib:...`` callback data)."""
        query = update.callback_query
        action = Action.decode(query.data or "") if query is not None else None
        if query is None or action is None or query.message is None:
            return
        actor = actor_of(query.from_user)
        message = query.message
        thread = thread_of(message) if isinstance(message, Message) else None
        target = Target(message.chat.id, message.message_id, thread)
        self.rt.run(self._press(update, action, actor, target), actor, target, "button")

    async def _press(self, update: Update, action: Action, actor: Actor, target: Target) -> None:
        rt = self.rt
        query = update.callback_query
        assert query is not None and query.message is not None
        chat = query.message.chat
        locale = await rt.locale(actor)
        if not rt.allowed(chat, actor):
            await query.answer(clip(rt.core.presenter.error(locale, NotAllowed()), ANSWER_LIMIT))
            return
        try:
            await rt.core.api.owned(actor, action.turn_id)
        except BotError as err:
            denied = await rt.core.api.error_reply(actor, err)
            await query.answer(clip(denied.text, ANSWER_LIMIT), show_alert=False)
            return
        if action.kind == "edit":
            await query.answer(clip(rt.t(locale, "telegram.edit_hint"), ANSWER_LIMIT),
                               show_alert=True)
            return
        if action.kind == "delete":
            refs = await rt.service.delete(actor, action.turn_id)
            await query.answer(clip(rt.t(locale, "result.deleted"), ANSWER_LIMIT))
            shown = [(int(r.chat_id), int(r.message_id)) for r in refs if r.platform == "telegram"]
            if not await delete_all(rt.bot, shown) and isinstance(query.message, Message):
                with contextlib.suppress(TelegramError):
                    await query.message.edit_reply_markup(None)
            return
        await query.answer()
        async with rt.reporter(target, locale) as status:
            result = await rt.service.act(actor, chat_of(chat, target.thread_id), action,
                                          status.on_progress)
            await rt.renderer.deliver(result, target)

    def close(self) -> None:
        """Drop albums still being collected."""
        self.albums.cancel()
