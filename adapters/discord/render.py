"""Reply -> Discord: files fitted to the upload limit, a short text, persistent buttons, fallbacks."""

from __future__ import annotations

import contextlib
import io
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import discord

from adapters.discord.common import (
    DEFAULT_UPLOAD_LIMIT,
    PLATFORM,
    JobStart,
    clip,
    log,
    message_ref,
    reply_to,
)
from adapters.discord.progress import ProgressReporter
from adapters.discord.views import result_view
from bot.api import Budget, Capabilities, Delivery, Reply
from bot.errors import BotError

if TYPE_CHECKING:
    from adapters.discord.client import ImagineClient

#: What Discord stores as attachments without recompressing (anything else is re-encoded).
_FORMATS = ("image/png", "image/jpeg", "image/webp", "image/gif")
#: Codes that mean the interaction token can no longer be used (Invalid Webhook Token, Unknown
#: Webhook); after 15 minutes Discord answers 401 with 50027.
_TOKEN_GONE = (50027, 10015)
#: Leave time for the upload itself before the token's 15 minutes run out.
_TOKEN_MARGIN = timedelta(seconds=60)


def token_gone(exc: discord.HTTPException) -> bool:
    """True when ``exc`` says the interaction token expired or is unknown."""
    return exc.status == 401 or exc.code in _TOKEN_GONE


def token_fresh(interaction: discord.Interaction[Any], life: float) -> bool:
    """True while the interaction token should still work for an upload."""
    age = discord.utils.utcnow() - interaction.created_at
    return age < timedelta(seconds=life) - _TOKEN_MARGIN


def requester_only(user_id: int) -> discord.AllowedMentions:
    """Ping the requester and nobody else, whatever the echoed prompt says."""
    return discord.AllowedMentions(everyone=False, users=[discord.Object(user_id)], roles=False,
                                   replied_user=False)


def capabilities(limit: int) -> Capabilities:
    """What a message accepts: 10 attachments, each under ``limit`` bytes (per file since 2025-04)."""
    return Capabilities(caption_limit=2000, photo_budget=Budget(max_bytes=limit, formats=_FORMATS),
                        files_per_message=10)


def files_of(out: Delivery) -> list[discord.File]:
    """Fresh File objects (a File is consumed by one upload)."""
    return [discord.File(io.BytesIO(item.photo.data),
                         filename=f"imagine-{out.turn_id}-{i + 1}.{item.photo.extension}")
            for i, item in enumerate(out.items)]


def result_text(reply: Reply, requester_id: int) -> str:
    """The caption with a mention of the requester in front."""
    return clip(f"<@{requester_id}> {reply.text}")


async def run_interaction_job(bot: ImagineClient, interaction: discord.Interaction[Any],
                              locale: str, start: JobStart) -> None:
    """Run a job for a deferred interaction: progress edits, then delivery or the error."""

    async def edit(text: str) -> None:
        await interaction.edit_original_response(content=text)

    reporter = ProgressReporter(edit, bot.core.messages, locale)
    began = time.monotonic()
    async with bot.tracked():
        try:
            reply = await start(reporter)
        finally:
            resolved = await reporter.close()
        await deliver_interaction(bot, interaction, reply, resolved, began)


async def show(bot: ImagineClient, interaction: discord.Interaction[Any], text: str) -> None:
    """Replace the deferred (ephemeral) response with ``text``; remove it when ``text`` is empty."""
    try:
        if text:
            await interaction.edit_original_response(content=clip(text), view=None)
        else:
            await interaction.delete_original_response()
    except discord.HTTPException as exc:
        if not (text and token_gone(exc) and interaction.channel_id):
            log.info("could not show a response (%s)", exc.status)
            return
        # The token expired while the job waited: say it in the channel, to the requester only.
        channel = bot.get_partial_messageable(interaction.channel_id)
        with contextlib.suppress(discord.HTTPException):
            await channel.send(clip(f"<@{interaction.user.id}> {text}"),
                               allowed_mentions=requester_only(interaction.user.id))


async def deliver_interaction(bot: ImagineClient, interaction: discord.Interaction[Any],
                              reply: Reply, resolved: bool, began: float) -> None:
    """A result as a public follow-up (or in the channel once the token is too old); else the error."""
    core = bot.core
    if not reply.images or reply.turn_id is None:
        await show(bot, interaction, reply.text)
        return
    try:
        async with core.api.delivery(reply, capabilities(
                interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT)) as out:
            if not await _to_interaction(bot, interaction, out, resolved, began):
                await _to_channel(bot, interaction, out)
    except BotError as err:
        log.warning("result %s could not be fitted: %s", reply.turn_id, err)
        await show(bot, interaction, core.api.error_text(reply.locale, err))
    except discord.HTTPException as exc:
        log.warning("result %s undeliverable on %s: %s %s", reply.turn_id, PLATFORM, exc.status,
                    exc.code)
        await show(bot, interaction, core.api.t(reply.locale, "discord.upload_failed"))
    except NoChannel:
        log.warning("result %s undeliverable on %s: no channel", reply.turn_id, PLATFORM)
        await show(bot, interaction, core.api.t(reply.locale, "discord.upload_failed"))


class NoChannel(Exception):
    """The interaction's token expired and it names no channel to post in."""


async def _to_interaction(bot: ImagineClient, interaction: discord.Interaction[Any],
                          out: Delivery, resolved: bool, began: float) -> bool:
    """Deliver as the interaction's follow-up; False when its token is too old for that."""
    if not token_fresh(interaction, bot.token_life):
        return False
    reply, user_id = out.reply, interaction.user.id
    upload_start = time.monotonic()
    try:
        if not resolved:
            await _resolve(interaction, bot.core.api.t(
                reply.locale, "discord.done", elapsed=int(time.monotonic() - began)))
        sent = await interaction.followup.send(
            result_text(reply, user_id), files=files_of(out),
            view=result_view(reply, bot.core.messages), allowed_mentions=requester_only(user_id),
            wait=True)
    except discord.HTTPException as exc:
        if not token_gone(exc):
            raise
        log.info("interaction token expired before delivery of %s; using the channel",
                 out.turn_id)
        return False
    await out.sent([message_ref(sent.channel.id, sent.id)],
                   {"upload": time.monotonic() - upload_start})
    with contextlib.suppress(discord.HTTPException):
        await interaction.delete_original_response()
    return True


async def _resolve(interaction: discord.Interaction[Any], text: str) -> None:
    """End the deferred response's "thinking" state (only a dead token is worth raising)."""
    # A follow-up sent while the deferred response still "thinks" would replace it (and be
    # ephemeral too); editing it first makes the follow-up a public message of its own.
    try:
        await interaction.edit_original_response(content=text)
    except discord.HTTPException as exc:
        if token_gone(exc):
            raise
        log.info("could not end the thinking state (%s); sending the result anyway", exc.status)


async def _to_channel(bot: ImagineClient, interaction: discord.Interaction[Any],
                      out: Delivery) -> None:
    if interaction.channel_id is None:
        raise NoChannel()
    user_id = interaction.user.id
    channel = bot.get_partial_messageable(interaction.channel_id, guild_id=interaction.guild_id)
    upload_start = time.monotonic()
    sent = await channel.send(result_text(out.reply, user_id), files=files_of(out),
                              view=result_view(out.reply, bot.core.messages),
                              allowed_mentions=requester_only(user_id))
    await out.sent([message_ref(sent.channel.id, sent.id)],
                   {"upload": time.monotonic() - upload_start})


async def deliver_message(bot: ImagineClient, trigger: discord.Message, reply: Reply) -> None:
    """A result (or error) for a message-triggered job, as a reply to the user's message."""
    core = bot.core
    no_ping = discord.AllowedMentions.none()
    if not reply.images or reply.turn_id is None:
        if reply.text:
            with contextlib.suppress(discord.HTTPException):
                await reply_to(trigger, clip(reply.text), allowed_mentions=no_ping)
        return
    guild = trigger.guild
    limit = guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
    try:
        async with core.api.delivery(reply, capabilities(limit)) as out:
            upload_start = time.monotonic()
            sent = await reply_to(
                trigger, clip(reply.text), files=files_of(out),
                view=result_view(reply, core.messages),
                allowed_mentions=discord.AllowedMentions(everyone=False, users=False,
                                                         roles=False, replied_user=True))
            await out.sent([message_ref(sent.channel.id, sent.id)],
                           {"upload": time.monotonic() - upload_start})
    except BotError as err:
        with contextlib.suppress(discord.HTTPException):
            await reply_to(trigger, clip(core.api.error_text(reply.locale, err)),
                           allowed_mentions=no_ping)
    except discord.HTTPException as exc:
        log.warning("result %s undeliverable: %s %s", reply.turn_id, exc.status, exc.code)
        with contextlib.suppress(discord.HTTPException):
            await reply_to(trigger, core.api.t(reply.locale, "discord.upload_failed"),
                           allowed_mentions=no_ping)
