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
from bot import images
from bot.domain import ImageData, Reply
from bot.errors import BotError
from bot.images import Budget

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


async def fit_images(reply: Reply, limit: int) -> list[ImageData]:
    """Each image re-encoded (off the loop) only if it exceeds ``limit`` bytes; at most 10."""
    budget = Budget(max_bytes=limit, formats=_FORMATS)
    return [await images.fit(image, budget) for image in reply.images[:10]]


def files_of(fitted: list[ImageData], turn_id: str) -> list[discord.File]:
    """Fresh File objects (a File is consumed by one upload)."""
    return [discord.File(io.BytesIO(img.data), filename=f"imagine-{turn_id}-{i + 1}.{img.extension}")
            for i, img in enumerate(fitted)]


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
    turn_id = reply.turn_id
    if not reply.images or turn_id is None:
        await show(bot, interaction, reply.text)
        return
    fit_start = time.monotonic()
    try:
        fitted = await fit_images(reply, interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT)
    except BotError as err:
        log.warning("result %s could not be fitted: %s", turn_id, err)
        await core.service.undeliverable(turn_id)
        await show(bot, interaction, core.presenter.error(reply.locale, err))
        return
    timings = {"fit": time.monotonic() - fit_start}
    user_id = interaction.user.id
    view = result_view(reply, core.messages)
    if token_fresh(interaction, bot.token_life):
        upload_start = time.monotonic()
        try:
            if not resolved:
                await _resolve(interaction, core.messages.t(
                    reply.locale, "discord.done", elapsed=int(time.monotonic() - began)))
            sent = await interaction.followup.send(
                result_text(reply, user_id), files=files_of(fitted, turn_id), view=view,
                allowed_mentions=requester_only(user_id), wait=True)
        except discord.HTTPException as exc:
            if not token_gone(exc):
                await _undeliverable(bot, interaction, reply, exc)
                return
            log.info("interaction token expired before delivery of %s; using the channel", turn_id)
        else:
            timings["upload"] = time.monotonic() - upload_start
            await core.service.bind(turn_id, [message_ref(sent.channel.id, sent.id)], timings)
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()
            return
    await _deliver_to_channel(bot, interaction, reply, fitted, view, timings)


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


async def _deliver_to_channel(bot: ImagineClient, interaction: discord.Interaction[Any],
                              reply: Reply, fitted: list[ImageData], view: discord.ui.View,
                              timings: dict[str, float]) -> None:
    turn_id = reply.turn_id or ""
    if interaction.channel_id is None:
        await _undeliverable(bot, interaction, reply, None)
        return
    user_id = interaction.user.id
    channel = bot.get_partial_messageable(interaction.channel_id, guild_id=interaction.guild_id)
    upload_start = time.monotonic()
    try:
        sent = await channel.send(result_text(reply, user_id), files=files_of(fitted, turn_id),
                                  view=view, allowed_mentions=requester_only(user_id))
    except discord.HTTPException as exc:
        await _undeliverable(bot, interaction, reply, exc)
        return
    timings["upload"] = time.monotonic() - upload_start
    await bot.core.service.bind(turn_id, [message_ref(sent.channel.id, sent.id)], timings)


async def _undeliverable(bot: ImagineClient, interaction: discord.Interaction[Any], reply: Reply,
                         exc: discord.HTTPException | None) -> None:
    log.warning("result %s undeliverable on %s: %s", reply.turn_id, PLATFORM,
                f"{exc.status} {exc.code}" if exc else "no channel")
    if reply.turn_id:
        await bot.core.service.undeliverable(reply.turn_id)
    await show(bot, interaction, bot.core.messages.t(reply.locale, "discord.upload_failed"))


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
    fit_start = time.monotonic()
    try:
        fitted = await fit_images(reply, limit)
    except BotError as err:
        await core.service.undeliverable(reply.turn_id)
        with contextlib.suppress(discord.HTTPException):
            await reply_to(trigger, clip(core.presenter.error(reply.locale, err)),
                           allowed_mentions=no_ping)
        return
    timings = {"fit": time.monotonic() - fit_start}
    upload_start = time.monotonic()
    try:
        sent = await reply_to(
            trigger, clip(reply.text), files=files_of(fitted, reply.turn_id),
            view=result_view(reply, core.messages),
            allowed_mentions=discord.AllowedMentions(everyone=False, users=False, roles=False,
                                                     replied_user=True))
    except discord.HTTPException as exc:
        log.warning("result %s undeliverable: %s %s", reply.turn_id, exc.status, exc.code)
        await core.service.undeliverable(reply.turn_id)
        with contextlib.suppress(discord.HTTPException):
            await reply_to(trigger, core.messages.t(reply.locale, "discord.upload_failed"),
                           allowed_mentions=no_ping)
        return
    timings["upload"] = time.monotonic() - upload_start
    await core.service.bind(reply.turn_id, [message_ref(sent.channel.id, sent.id)], timings)
