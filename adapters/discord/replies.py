"""A reply that mentions the bot edits the replied-to image (a result continues its conversation)."""

# No message-content intent is needed: Discord delivers the content and attachments of messages
# that mention the bot (a reply with the default ping does) and of DMs.

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

import discord

from adapters.discord.common import (
    allowed,
    attachment_sources,
    chat_of,
    clip,
    download,
    error_reply,
    image_sources,
    log,
    message_ref,
    reply_to,
)
from adapters.discord.progress import ProgressReporter
from adapters.discord.render import deliver_message
from bot.domain import Actor, ChatRef, ImageRequest, MessageRef, Reply
from bot.errors import BotError
from bot.prompts import parse_flags

if TYPE_CHECKING:
    from adapters.discord.client import ImagineClient


def _addressed(bot: ImagineClient, message: discord.Message) -> bool:
    """A reply by a person that mentions the bot (in DMs any reply counts)."""
    me = bot.user
    if me is None or message.author.bot or message.reference is None:
        return False
    if message.reference.message_id is None:
        return False
    dm = message.guild is None
    return dm or any(user.id == me.id for user in message.mentions)


def _instruction(bot: ImagineClient, content: str) -> str:
    me = bot.user
    if me is not None:
        content = re.sub(rf"<@!?{me.id}>", " ", content)
    return content.strip()


async def _referenced(message: discord.Message) -> discord.Message | None:
    """The replied-to message: resolved by Discord, else fetched."""
    ref = message.reference
    if ref is None or ref.message_id is None:
        return None
    if isinstance(ref.resolved, discord.Message):
        return ref.resolved
    with contextlib.suppress(discord.HTTPException):
        return await message.channel.fetch_message(ref.message_id)
    return None


async def on_message(bot: ImagineClient, message: discord.Message) -> None:
    """Handle a reply addressed to the bot; everything else is ignored."""
    if not _addressed(bot, message):
        return
    guild_id = message.guild.id if message.guild else None
    if not allowed(bot.core, guild_id) or not bot.accepting:
        return
    async with bot.tracked():
        try:
            await _edit_from_reply(bot, message, guild_id)
        except Exception:
            log.exception("reply edit failed for message %s", message.id)


async def _edit_from_reply(bot: ImagineClient, message: discord.Message,
                           guild_id: int | None) -> None:
    core = bot.core
    service = core.service
    author = message.author
    locale_hint = str(message.guild.preferred_locale) if message.guild else None
    actor = Actor("discord", str(author.id), author.display_name, locale_hint)
    chat = chat_of(message.channel.id, guild_id,
                   nsfw=bool(getattr(message.channel, "nsfw", False)))  # age-restricted
    if not (await service.groups.get(chat)).reply_edits:
        return  # the server's admins turned reply edits off (/config reply-edits off)
    ref = message.reference
    assert ref is not None and ref.message_id is not None
    target = message_ref(ref.channel_id or message.channel.id, ref.message_id)
    max_input = int(core.settings.limits.max_input_mb * 1_000_000)
    status = _Status(message)
    reporter = ProgressReporter(status.edit, core.messages, await service.locale_for(actor))
    try:
        try:
            reply = await _run(bot, message, actor, chat, target, max_input, reporter)
        finally:
            await reporter.close()
        await deliver_message(bot, message, reply)
    finally:
        await status.remove()


async def _run(bot: ImagineClient, message: discord.Message, actor: Actor,
               chat: ChatRef, target: MessageRef, max_input: int,
               progress: ProgressReporter) -> Reply:
    core = bot.core
    service = core.service
    try:
        prompt, options = parse_flags(_instruction(bot, message.content))
        extra = await download(bot.session, attachment_sources(message.attachments), max_input)
        bound = await service.turn_for(target) is not None
        refs = extra
        if not bound:
            original = await _referenced(message)
            sources = image_sources(original) if original is not None else []
            refs = await download(bot.session, sources, max_input) + extra
    except BotError as err:
        return await error_reply(core, actor, err)
    request = ImageRequest(actor=actor, chat=chat, prompt=prompt, references=refs,
                           options=options, kind="edit")
    return await core.api.attempt(
        actor, service.edit(request, reply_to=target if bound else None, progress=progress))


class _Status:
    """A status reply to the user's message, created on the first progress edit."""

    def __init__(self, trigger: discord.Message) -> None:
        self._trigger = trigger
        self._message: discord.Message | None = None

    async def edit(self, text: str) -> None:
        """Create or edit the status message."""
        if self._message is None:
            self._message = await reply_to(
                self._trigger, clip(text), mention_author=False,
                allowed_mentions=discord.AllowedMentions.none())
        else:
            await self._message.edit(content=clip(text))

    async def remove(self) -> None:
        """Delete the status message once the result (or error) is out."""
        if self._message is not None:
            with contextlib.suppress(discord.HTTPException):
                await self._message.delete()
