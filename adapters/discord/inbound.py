"""Discord objects -> the core's values: who asks, where, about which message, with which images."""

# Without the privileged message-content intent ([discord] message_content_intent = false),
# Discord still delivers the content and attachments of DMs, of messages that @mention the bot,
# and of ping-replies to a regular bot message - but "it does not apply to replies to slash
# command responses", and other people's messages arrive empty
# (https://discord.com/developers/docs/gateway/you-might-not-need-a-privileged-intent). So a
# ping-only reply to an /imagine result is seen as addressed but empty (``withheld``), and a
# picture in someone else's message is invisible; the Edit button and the "Edit image" menu
# (which receives the whole message) work either way.

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord

from bot.api import Actor, BotApi, ChatRef, ImageData, ImageLink, InputTooLarge, MessageRef, NotFound

log = logging.getLogger("adapters.discord")
PLATFORM = "discord"
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".heic", ".heif", ".avif")


@dataclass(frozen=True, slots=True)
class ImageSource:
    """An image someone posted: where to fetch it and what Discord says about it."""

    url: str
    filename: str = ""
    size: int | None = None
    #: The content type Discord declares (empty when it declares none, e.g. link previews).
    mime: str = ""


# ----- who and where -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Place:
    """Where a result goes when no interaction can take it (takeover.py, outbox.py)."""

    channel_id: int
    guild_id: int | None
    user_id: int
    #: The bot's message showing the job's progress (deleted once the result is out).
    shown: int | None = None
    #: The user's message the job answers (a reply-edit), if any.
    reply_to: int | None = None


def actor_of(interaction: discord.Interaction[Any], *, vouch: bool = False) -> Actor:
    """The core's Actor; ``vouch`` marks an admin the adapter vouches for (see is_moderator)."""
    user = interaction.user
    return Actor(PLATFORM, str(user.id), user.display_name, str(interaction.locale), vouch)


def author_of(message: discord.Message) -> Actor:
    """The Actor who wrote ``message`` (the server's language is the only hint there is)."""
    hint = str(message.guild.preferred_locale) if message.guild else None
    return Actor(PLATFORM, str(message.author.id), message.author.display_name, hint)


def chat_of(channel_id: int, guild_id: int | None, *, nsfw: bool = False) -> ChatRef:
    """The ChatRef of a channel, thread or DM (its server's /config applies; bot.groups)."""
    dm = guild_id is None  # DMs and group DMs carry no guild
    return ChatRef(PLATFORM, str(channel_id), "private" if dm else "group",
                   group_id=None if dm else str(guild_id), age_restricted=nsfw)


def _nsfw(channel: object) -> bool:
    """An age-restricted channel (Discord's ``nsfw`` flag); DMs and unknown channels are not."""
    return bool(getattr(channel, "nsfw", False))


def interaction_chat(interaction: discord.Interaction[Any]) -> ChatRef:
    """Where an interaction happened."""
    return chat_of(interaction.channel_id or 0, interaction.guild_id,
                   nsfw=_nsfw(interaction.channel))


def message_chat(message: discord.Message) -> ChatRef:
    """Where a message was posted."""
    return chat_of(message.channel.id, message.guild.id if message.guild else None,
                   nsfw=_nsfw(message.channel))


def message_ref(channel_id: int, message_id: int) -> MessageRef:
    """The MessageRef bindings use for a Discord message."""
    return MessageRef(PLATFORM, str(channel_id), str(message_id))


def allowed(guild_id: int | None, *, allow_dms: bool, allowed_guilds: Sequence[int]) -> bool:
    """The ``[discord]`` allow-list: DMs when ``allow_dms``; guilds in ``allowed_guilds`` if set."""
    if guild_id is None:
        return allow_dms
    return not allowed_guilds or guild_id in allowed_guilds


def is_moderator(interaction: discord.Interaction[Any], allowed_guilds: Sequence[int]) -> bool:
    """Manage Server in a guild the operator allow-listed (open bots trust only configured admins)."""
    guild_id = interaction.guild_id
    if guild_id is None or guild_id not in allowed_guilds:
        return False
    return interaction.permissions.manage_guild


def manages_server(interaction: discord.Interaction[Any]) -> bool:
    """Manage Server in this guild, as Discord resolved it for the interaction.

    The permission is read from the interaction, whose ``member.permissions`` Discord itself
    computes for the invoking member in that channel
    (https://discord.com/developers/docs/interactions/receiving-and-responding#interaction-object),
    never from anything the member typed.
    """
    return interaction.guild_id is not None and interaction.permissions.manage_guild


def manages_messages(interaction: discord.Interaction[Any]) -> bool:
    """Manage Messages in this guild (a moderator may delete any result there)."""
    return interaction.guild_id is not None and interaction.permissions.manage_messages


# ----- replies that address the bot ----------------------------------------------------------


def addressed(me: discord.ClientUser | None, message: discord.Message) -> bool:
    """A reply by a person that mentions the bot (in DMs any reply counts)."""
    if me is None or message.author.bot or message.reference is None:
        return False
    if message.reference.message_id is None:
        return False
    return message.guild is None or any(user.id == me.id for user in message.mentions)


def withheld(message: discord.Message) -> bool:
    """A guild message that came without its content (nothing to read, nothing attached)."""
    return (message.guild is not None and not message.content and not message.attachments
            and not message.embeds)


def instruction(me: discord.ClientUser | None, content: str) -> str:
    """The reply's words without the mention of the bot."""
    if me is not None:
        content = re.sub(rf"<@!?{me.id}>", " ", content)
    return content.strip()


def replied_to(message: discord.Message) -> MessageRef:
    """The message a reply answers."""
    ref = message.reference
    assert ref is not None and ref.message_id is not None
    return message_ref(ref.channel_id or message.channel.id, ref.message_id)


async def referenced(message: discord.Message) -> discord.Message | None:
    """The replied-to message: resolved by Discord, else fetched."""
    ref = message.reference
    if ref is None or ref.message_id is None:
        return None
    if isinstance(ref.resolved, discord.Message):
        return ref.resolved
    with contextlib.suppress(discord.HTTPException):
        return await message.channel.fetch_message(ref.message_id)
    return None


# ----- images --------------------------------------------------------------------------------


def image_sources(message: discord.Message) -> list[ImageSource]:
    """Images on a message: image attachments first, then embed images."""
    found: list[ImageSource] = []
    for att in message.attachments:
        kind = (att.content_type or "").split(";")[0]
        if kind.startswith("image/") or att.filename.lower().endswith(_IMAGE_EXTENSIONS):
            found.append(ImageSource(att.url, att.filename, att.size, att.content_type or ""))
    for embed in message.embeds:
        for media in (embed.image, embed.thumbnail):
            url = media.proxy_url or media.url
            if url:
                found.append(ImageSource(url, url.rsplit("/", 1)[-1].split("?")[0]))
                break
    return found


def attachment_sources(attachments: Sequence[discord.Attachment]) -> list[ImageSource]:
    """Every attachment (bad ones are refused by the core with a clear reason)."""
    return [ImageSource(a.url, a.filename, a.size, a.content_type or "") for a in attachments]


async def references(api: BotApi, session: aiohttp.ClientSession, sources: Sequence[ImageSource],
                     max_bytes: int) -> tuple[tuple[ImageData, ...], tuple[ImageLink, ...]]:
    """The images as links when the core takes every one by URL, else downloaded.

    All or none, so the references keep the order the user gave them in (bot/links.py: the
    upstream fetches Discord's CDN URLs itself, and nothing is downloaded before the job).
    """
    links = [api.image_link(s.url, s.mime, s.size, s.filename) for s in sources]
    if sources and all(link is not None for link in links):
        return (), tuple(link for link in links if link is not None)
    return await download(session, sources, max_bytes), ()


async def download(session: aiohttp.ClientSession, sources: Sequence[ImageSource],
                   max_bytes: int) -> tuple[ImageData, ...]:
    """Fetch ``sources`` concurrently, refusing any larger than ``max_bytes`` without reading it."""
    for src in sources:
        if src.size is not None and src.size > max_bytes:
            raise InputTooLarge(src.size / 1e6, max_bytes / 1e6)
    return tuple(await asyncio.gather(*(_fetch(session, s, max_bytes) for s in sources)))


async def _fetch(session: aiohttp.ClientSession, src: ImageSource, max_bytes: int) -> ImageData:
    try:
        async with session.get(src.url) as resp:
            if resp.status != 200:
                raise NotFound(f"download {resp.status}")
            chunks: list[bytes] = []
            total = 0
            async for chunk in resp.content.iter_chunked(256 * 1024):
                total += len(chunk)
                if total > max_bytes:
                    raise InputTooLarge(total / 1e6, max_bytes / 1e6)
                chunks.append(chunk)
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.info("download of %s failed: %s", src.filename, exc)
        raise NotFound("download failed") from exc
    mime = resp.headers.get("Content-Type", "application/octet-stream").split(";")[0]
    return ImageData(data=b"".join(chunks), mime=mime, name=src.filename)
