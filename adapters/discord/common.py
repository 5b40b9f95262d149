"""Shared pieces of the Discord adapter: identities, the allow-list, texts and image downloads."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot.bootstrap import Core
from bot.domain import Actor, ChatRef, ImageData, MessageRef, Progress, Reply
from bot.errors import BotError, InputTooLarge, NotFound

if TYPE_CHECKING:
    from adapters.discord.client import ImagineClient

log = logging.getLogger("adapters.discord")
PLATFORM = "discord"
ProgressCallback = Callable[[Progress], Awaitable[None]]
#: A job starter: given the progress callback, run the core call and return its Reply.
JobStart = Callable[[ProgressCallback], Awaitable[Reply]]
#: Bots upload 10 MiB per file unless the guild is boosted.
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
CONTENT_LIMIT = 2000
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".heic", ".heif", ".avif")


@dataclass(frozen=True, slots=True)
class ImageSource:
    """An image someone posted: where to fetch it and what Discord says about it."""

    url: str
    filename: str = ""
    size: int | None = None


def bot_of(interaction: discord.Interaction[Any]) -> ImagineClient:
    """The ImagineClient that received ``interaction``."""
    from adapters.discord.client import ImagineClient

    client = interaction.client
    if not isinstance(client, ImagineClient):
        raise TypeError("interaction from an unexpected client")
    return client


def is_dm(guild_id: int | None) -> bool:
    """DMs and group DMs carry no guild."""
    return guild_id is None


def allowed(core: Core, guild_id: int | None) -> bool:
    """The ``[discord]`` allow-list: DMs when ``allow_dms``; guilds in ``allowed_guilds`` if set."""
    section = core.settings.discord
    if guild_id is None:
        return section.allow_dms
    return not section.allowed_guilds or guild_id in section.allowed_guilds


def actor_of(interaction: discord.Interaction[Any], *, vouch: bool = False) -> Actor:
    """The core's Actor; ``vouch`` marks an admin the adapter vouches for (see is_moderator)."""
    user = interaction.user
    return Actor(PLATFORM, str(user.id), user.display_name, str(interaction.locale), vouch)


def is_moderator(interaction: discord.Interaction[Any]) -> bool:
    """Manage Server in a guild the operator allow-listed (open bots trust only configured admins)."""
    guild_id = interaction.guild_id
    allow = bot_of(interaction).core.settings.discord.allowed_guilds
    if guild_id is None or guild_id not in allow:
        return False
    return interaction.permissions.manage_guild


def chat_of(channel_id: int, guild_id: int | None, *, nsfw: bool = False) -> ChatRef:
    """The ChatRef of a channel, thread or DM (its server's /config applies; bot.groups)."""
    dm = is_dm(guild_id)
    return ChatRef(PLATFORM, str(channel_id), "private" if dm else "group",
                   group_id=None if dm else str(guild_id), age_restricted=nsfw)


def message_ref(channel_id: int, message_id: int) -> MessageRef:
    """The MessageRef bindings use for a Discord message."""
    return MessageRef(PLATFORM, str(channel_id), str(message_id))


async def reply_to(trigger: discord.Message, content: str, **kwargs: Any) -> discord.Message:
    """Reply to a user's message, or post plainly if they deleted it meanwhile.

    Discord refuses a reply to a message that is gone unless ``fail_if_not_exists`` is false
    (https://discord.com/developers/docs/resources/message#message-reference-structure), which
    lost finished, paid-for results when the asker deleted their message during the job.
    """
    reference = trigger.to_reference(fail_if_not_exists=False)
    return await trigger.channel.send(content, reference=reference, **kwargs)


def clip(text: str, limit: int = CONTENT_LIMIT) -> str:
    """``text`` cut to Discord's content limit."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def error_reply(core: Core, actor: Actor, err: BotError) -> Reply:
    """An error Reply in the actor's language (empty text for a ban told before)."""
    return await core.api.error_reply(actor, err)


def image_sources(message: discord.Message) -> list[ImageSource]:
    """Images on a message: image attachments first, then embed images."""
    found: list[ImageSource] = []
    for att in message.attachments:
        kind = (att.content_type or "").split(";")[0]
        if kind.startswith("image/") or att.filename.lower().endswith(_IMAGE_EXTENSIONS):
            found.append(ImageSource(att.url, att.filename, att.size))
    for embed in message.embeds:
        for media in (embed.image, embed.thumbnail):
            url = media.proxy_url or media.url
            if url:
                found.append(ImageSource(url, url.rsplit("/", 1)[-1].split("?")[0]))
                break
    return found


def attachment_sources(attachments: Sequence[discord.Attachment]) -> list[ImageSource]:
    """Every attachment (bad ones are refused by the core with a clear reason)."""
    return [ImageSource(a.url, a.filename, a.size) for a in attachments]


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
