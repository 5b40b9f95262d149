"""Discord's verbs for results and texts: a v2 layout of files, text and persistent buttons.

A result goes through ``api.delivery(reply, capabilities(limit))``: the core fits the images
to the upload limit, settles on ``out.sent`` and refunds when the block is left any other way.
An upload Discord refuses becomes :class:`UploadFailed`, which the runtime's guard shows.
A result message is components v2 (widgets.result_layout): the text, one gallery of the
uploaded files, the buttons; texts that replace a deferred response are v2 too (text_layout),
because that response may already show progress, and v2 cannot be taken off a message.
A job's interaction is deferred publicly and its result is the edit that ends the deferral
(two calls a job); its errors are told privately, in an ephemeral follow-up.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import discord

from adapters.discord.inbound import Place, message_ref
from adapters.discord.outbox import patiently
from adapters.discord.upload import MemoryFile
from adapters.discord.widgets import result_layout, text_layout
from bot.api import BotApi, BotError, Budget, Capabilities, Delivery, Reply

log = logging.getLogger("adapters.discord")
#: Bots upload 10 MiB per file unless the guild is boosted.
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
#: https://discord.com/developers/docs/resources/message#create-message-jsonform-params
CONTENT_LIMIT = 2000
#: What Discord stores as attachments without recompressing (anything else is re-encoded).
_FORMATS = ("image/png", "image/jpeg", "image/webp", "image/gif")
#: Codes that mean the interaction token can no longer be used (Invalid Webhook Token, Unknown
#: Webhook); after 15 minutes Discord answers 401 with 50027.
_TOKEN_GONE = (50027, 10015)
#: Leave time for the upload itself before the token's 15 minutes run out.
_TOKEN_MARGIN = timedelta(seconds=60)
#: The interaction token's life; results that come later go to the channel instead.
TOKEN_LIFE = 15 * 60.0
_NO_PING = discord.AllowedMentions.none()


def capabilities(limit: int) -> Capabilities:
    """What a message accepts: 10 attachments, each under ``limit`` bytes (per file since 2025-04)."""
    return Capabilities(caption_limit=CONTENT_LIMIT, files_per_message=10,
                        photo_budget=Budget(max_bytes=limit, formats=_FORMATS))


#: Outside a guild (DMs) the default limit applies.
CAPABILITIES = capabilities(DEFAULT_UPLOAD_LIMIT)


class UploadFailed(BotError):
    """Discord refused the result's upload (the result was refunded)."""

    key = "discord.upload_failed"


def clip(text: str, limit: int = CONTENT_LIMIT) -> str:
    """``text`` cut to Discord's content limit."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def token_gone(exc: discord.HTTPException) -> bool:
    """True when ``exc`` says the interaction token expired or is unknown."""
    return exc.status == 401 or exc.code in _TOKEN_GONE


def requester_only(user_id: int) -> discord.AllowedMentions:
    """Ping the requester and nobody else, whatever the echoed prompt says."""
    return discord.AllowedMentions(everyone=False, users=[discord.Object(user_id)], roles=False,
                                   replied_user=False)


async def reply_to(trigger: discord.Message, content: str | None = None,
                   **kwargs: Any) -> discord.Message:
    """Reply to a user's message, or post plainly if they deleted it meanwhile.

    Discord refuses a reply to a message that is gone unless ``fail_if_not_exists`` is false
    (https://discord.com/developers/docs/resources/message#message-reference-structure), which
    lost finished, paid-for results when the asker deleted their message during the job.
    ``content`` None: a v2 message (``view=`` a LayoutView), which may carry no content.
    """
    reference = trigger.to_reference(fail_if_not_exists=False)
    if content is None:
        return await trigger.channel.send(reference=reference, **kwargs)
    return await trigger.channel.send(clip(content), reference=reference, **kwargs)


def _files(out: Delivery) -> list[discord.File]:
    """Fresh File objects (a File is consumed by one upload)."""
    return [discord.File(MemoryFile(item.photo.data),
                         filename=f"imagine-{out.turn_id}-{i + 1}.{item.photo.extension}")
            for i, item in enumerate(out.items)]


class Sender:
    """Everything the adapter shows: results, answers to interactions, replies to messages."""

    def __init__(self, api: BotApi, client: discord.Client, token_life: float = TOKEN_LIFE) -> None:
        self.api = api
        self.client = client
        self.token_life = token_life
        #: How long a channel post Discord holds back (a long 429) keeps being offered (outbox.py).
        self.patience = api.delivery_patience
        #: Interactions of jobs in flight, deferred publicly (:meth:`thinking`), and the id of
        #: the message their deferral made (to delete it as a channel message once the
        #: interaction token is too old to).
        self._public: dict[int, int | None] = {}

    async def thinking(self, interaction: discord.Interaction[Any]) -> None:
        """Defer a job publicly: its progress, then its result, replace the "thinking" state.

        Two calls a job (issue 21): the deferral and the edit that carries the result. What
        goes wrong is still told to the user alone (:meth:`say`).
        """
        callback = await interaction.response.defer(thinking=True)
        self._public[interaction.id] = callback.message_id if callback is not None else None

    def forget(self, interaction: discord.Interaction[Any]) -> None:
        """The job of ``interaction`` is over."""
        self._public.pop(interaction.id, None)

    async def _drop_thinking(self, interaction: discord.Interaction[Any], *,
                             expired: bool = False) -> None:
        """Delete a job's public deferral: by its token, or as the bot's own channel message."""
        if not expired:
            try:
                await interaction.delete_original_response()
                return
            except discord.HTTPException as exc:
                if not token_gone(exc):
                    return
        if interaction.channel_id is not None:
            await self.delete(interaction.channel_id, interaction.guild_id,
                              self._public.get(interaction.id))

    def deferral(self, interaction: discord.Interaction[Any]) -> int | None:
        """The message a job's public deferral made (known once :meth:`thinking` returned)."""
        return self._public.get(interaction.id)

    async def delete(self, channel_id: int, guild_id: int | None, message_id: int | None) -> None:
        """Delete one of the bot's own messages in a channel, if it is still there."""
        if message_id is not None:
            channel = self.client.get_partial_messageable(channel_id, guild_id=guild_id)
            with contextlib.suppress(discord.HTTPException):
                await channel.get_partial_message(message_id).delete()

    # ----- texts -----------------------------------------------------------------------------

    async def say(self, interaction: discord.Interaction[Any], text: str) -> None:
        """Answer privately, however far the interaction got (empty ``text``: say nothing)."""
        response = interaction.response
        if not response.is_done():
            if text:
                await response.send_message(clip(text), ephemeral=True)
                return
            await response.defer(ephemeral=True)  # acknowledged, so it does not show "failed"
        if response.type is discord.InteractionResponseType.deferred_message_update:
            # A menu's update: the message is the menu itself, so the answer goes beside it.
            if text:
                await interaction.followup.send(clip(text), ephemeral=True)
            return
        if interaction.id in self._public:
            # A job's public "thinking" goes; the reason goes to its user alone. (Deleted first:
            # a follow-up to a response that still thinks would replace it, publicly.)
            await self._drop_thinking(interaction)
            if text:
                try:
                    await interaction.followup.send(clip(text), ephemeral=True)
                except discord.HTTPException as exc:
                    if not (token_gone(exc) and interaction.channel_id):
                        raise
                    await self._to_requester(interaction, text)
            return
        await self.show(interaction, text)

    async def show(self, interaction: discord.Interaction[Any], text: str) -> None:
        """Replace the deferred (private) response with ``text``; remove it when ``text`` is empty."""
        try:
            if text:
                await interaction.edit_original_response(view=text_layout(text))
            else:
                await interaction.delete_original_response()
        except discord.HTTPException as exc:
            if not (text and token_gone(exc) and interaction.channel_id):
                log.info("could not show a response (%s)", exc.status)
                return
            await self._to_requester(interaction, text)

    async def _to_requester(self, interaction: discord.Interaction[Any], text: str) -> None:
        """The token expired while the job waited: say it in the channel, to the requester only."""
        assert interaction.channel_id is not None
        await self.tell(interaction.channel_id, interaction.user.id, text)

    async def tell(self, channel_id: int, user_id: int, text: str) -> None:
        """Say ``text`` in a channel, pinging its requester only (empty: nothing)."""
        if text:
            channel = self.client.get_partial_messageable(channel_id)
            with contextlib.suppress(discord.HTTPException):
                await channel.send(clip(f"<@{user_id}> {text}"),
                                   allowed_mentions=requester_only(user_id))

    async def reply_text(self, trigger: discord.Message, text: str) -> None:
        """A plain reply to a user's message that pings nobody (empty ``text``: nothing)."""
        if text:
            await reply_to(trigger, text, allowed_mentions=_NO_PING)

    async def status(self, trigger: discord.Message, text: str) -> discord.Message:
        """A status line under a user's message (progress of the job it asked for), v2."""
        return await reply_to(trigger, view=text_layout(text), mention_author=False,
                              allowed_mentions=_NO_PING)

    # ----- results ---------------------------------------------------------------------------

    async def result(self, interaction: discord.Interaction[Any], reply: Reply, *,
                     resolved: bool, began: float, in_place: bool = True) -> None:
        """A result in place of a public deferral, else as a public follow-up (or in the channel
        once the token is too old).

        ``in_place`` False: a progress edit was given up in flight and may still land, so an
        edit carrying the result could be overwritten by it; the result then goes as its own
        message and the response it would have replaced is deleted.
        """
        if not reply.images or reply.turn_id is None:
            await self.show(interaction, reply.text)
            return
        limit = interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT
        in_place = in_place and interaction.id in self._public
        try:
            async with self.api.delivery(reply, capabilities(limit)) as out:
                if not await self._to_interaction(interaction, out, resolved, began, in_place):
                    await self._to_channel(interaction, out)
        except discord.HTTPException as exc:
            log.warning("result %s undeliverable on discord: %s %s", reply.turn_id, exc.status,
                        exc.code)
            raise UploadFailed() from exc

    async def reply_result(self, trigger: discord.Message, reply: Reply) -> None:
        """A result of a message-triggered job, as a reply to the user's message."""
        if not reply.images or reply.turn_id is None:
            await self.reply_text(trigger, reply.text)
            return
        guild = trigger.guild
        limit = guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
        place = Place(trigger.channel.id, guild.id if guild else None, trigger.author.id,
                      reply_to=trigger.id)
        try:
            async with self.api.delivery(reply, capabilities(limit)) as out:

                def post() -> Awaitable[discord.Message]:
                    files = _files(out)  # fresh for every try
                    return reply_to(
                        trigger, files=files, view=result_layout(self.api, reply, reply.text, files),
                        allowed_mentions=discord.AllowedMentions(everyone=False, users=False,
                                                                 roles=False, replied_user=True))

                await self._patiently(out, place, post, self.patience)
        except discord.HTTPException as exc:
            log.warning("result %s undeliverable: %s %s", reply.turn_id, exc.status, exc.code)
            raise UploadFailed() from exc

    @staticmethod
    async def _patiently(out: Delivery, place: Place, post: Callable[[], Awaitable[discord.Message]],
                         patience: float) -> None:
        """:func:`patiently`, then settled; held back past ``patience``, the upload failed."""
        started = time.monotonic()
        try:
            sent = await patiently(out, place, post, patience)
        except discord.RateLimited as exc:
            log.warning("result %s undeliverable on discord: held back %.0f s more than it is "
                        "worth", out.turn_id, exc.retry_after)
            raise UploadFailed() from exc
        await out.sent([message_ref(sent.channel.id, sent.id)],
                       {"upload": time.monotonic() - started})

    def _fresh(self, interaction: discord.Interaction[Any]) -> bool:
        """True while the interaction token should still work for an upload."""
        age = discord.utils.utcnow() - interaction.created_at
        return age < timedelta(seconds=self.token_life) - _TOKEN_MARGIN

    async def _to_interaction(self, interaction: discord.Interaction[Any], out: Delivery,
                              resolved: bool, began: float, in_place: bool) -> bool:
        """Deliver on the interaction; False when its token is too old for that."""
        if not self._fresh(interaction):
            return False
        reply, user_id = out.reply, interaction.user.id
        files = _files(out)
        view = result_layout(self.api, reply, f"<@{user_id}> {reply.text}", files)
        if in_place:  # the edit that ends the public deferral
            return await self._settle(out, interaction.edit_original_response(
                attachments=files, view=view, allowed_mentions=requester_only(user_id)))
        if not resolved:
            await self._resolve(interaction, self.api.t(
                reply.locale, "discord.done", elapsed=int(time.monotonic() - began)))
        if not await self._settle(out, interaction.followup.send(
                files=files, view=view, allowed_mentions=requester_only(user_id), wait=True)):
            return False
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
        return True

    @staticmethod
    async def _settle(out: Delivery, sending: Awaitable[discord.Message]) -> bool:
        """Send the result and settle it; False when the token expired (the channel takes over)."""
        started = time.monotonic()
        try:
            sent = await sending
        except discord.HTTPException as exc:
            if not token_gone(exc):
                raise
            log.info("interaction token expired before delivery of %s; using the channel",
                     out.turn_id)
            return False
        await out.sent([message_ref(sent.channel.id, sent.id)],
                       {"upload": time.monotonic() - started})
        return True

    @staticmethod
    async def _resolve(interaction: discord.Interaction[Any], text: str) -> None:
        """End the deferred response's "thinking" state (only a dead token is worth raising)."""
        # A follow-up sent while the deferred response still "thinks" would replace it (and be
        # ephemeral too); editing it first makes the follow-up a public message of its own.
        try:
            await interaction.edit_original_response(view=text_layout(text))
        except discord.HTTPException as exc:
            if token_gone(exc):
                raise
            log.info("could not end the thinking state (%s); sending the result anyway",
                     exc.status)

    async def in_channel(self, reply: Reply, channel_id: int, guild_id: int | None,
                         user_id: int, *, reply_to: int | None = None,
                         patience: float | None = None, parked: bool = False) -> None:
        """A result with no interaction to answer (another process had deferred it, or parked
        it: outbox.py): posted in its channel, pinging its requester only.

        ``patience``: how long it is offered (default: ours); ``parked``: from the outbox.
        """
        if not reply.images or reply.turn_id is None:
            await self.tell(channel_id, user_id, reply.text)
            return
        try:
            async with self.api.delivery(reply, CAPABILITIES, parked) as out:
                await self._post(out, channel_id, guild_id, user_id, reply_to, patience)
        except discord.HTTPException as exc:
            log.warning("result %s undeliverable on discord: %s %s", reply.turn_id, exc.status,
                        exc.code)
            raise UploadFailed() from exc

    async def _to_channel(self, interaction: discord.Interaction[Any], out: Delivery) -> None:
        if interaction.channel_id is None:
            log.warning("result %s undeliverable on discord: no channel", out.turn_id)
            raise UploadFailed("the token expired and the interaction names no channel")
        await self._post(out, interaction.channel_id, interaction.guild_id, interaction.user.id)
        if interaction.id in self._public:  # its "thinking" would stay in the channel for good
            await self._drop_thinking(interaction, expired=True)

    async def _post(self, out: Delivery, channel_id: int, guild_id: int | None,
                    user_id: int, reply_to: int | None = None,
                    patience: float | None = None) -> None:
        """The result as a channel message of its own, pinging its requester; settled."""
        channel = self.client.get_partial_messageable(channel_id, guild_id=guild_id)
        extra: dict[str, Any] = {}
        if reply_to is not None:  # a reply-edit: the user's message, if it is still there
            extra["reference"] = discord.MessageReference(
                message_id=reply_to, channel_id=channel_id, fail_if_not_exists=False)

        def post() -> Awaitable[discord.Message]:
            files = _files(out)  # fresh for every try
            return channel.send(
                files=files, view=result_layout(self.api, out.reply,
                                                f"<@{user_id}> {out.reply.text}", files),
                allowed_mentions=requester_only(user_id), **extra)

        await self._patiently(out, Place(channel_id, guild_id, user_id, reply_to=reply_to), post,
                              self.patience if patience is None else patience)
