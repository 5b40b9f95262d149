"""Handlers that start jobs (/imagine, edits, replies to results) and the table presses go through."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import discord

from adapters.discord.inbound import (
    PLATFORM,
    ImageSource,
    actor_of,
    addressed,
    attachment_sources,
    author_of,
    image_sources,
    instruction,
    interaction_chat,
    manages_messages,
    message_chat,
    referenced,
    references,
    replied_to,
    withheld,
)
from adapters.discord.progress import ProgressReporter, StatusReply
from adapters.discord.runtime import Runtime
from adapters.discord.takeover import handoff
from adapters.discord.widgets import EditModal, Press, settings_panel, text_layout
from bot.api import (
    Action,
    Actor,
    BotError,
    ChatRef,
    EmptyPrompt,
    Handoff,
    ImageData,
    ImageLink,
    ImageRequest,
    MessageRef,
    Options,
    ProgressCallback,
    Reply,
    parse_flags,
)

log = logging.getLogger("adapters.discord")
Interaction = discord.Interaction[Any]
#: A job starter: given the progress callback and where the result goes should another process
#: make it (takeover.py), run the core call and return its result.
JobStart = Callable[[ProgressCallback, Handoff | None], Awaitable[Reply]]
PressHandler = Callable[[Interaction, Press], Awaitable[None]]


class MentionToEdit(BotError):
    """A reply pinged the bot, but Discord withheld its words (no message-content intent)."""

    key = "discord.mention_to_edit"


class UseEditMenu(BotError):
    """A reply asks to edit a picture the bot may not see (no message-content intent)."""

    key = "discord.use_edit_menu"


class Handlers:
    """What the client's events and the commands lead to."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.api = rt.api
        #: A pressed component's kind -> its handler (widgets.Press says what was pressed).
        self.presses: dict[str, PressHandler] = {
            "reroll": self._act, "upscale": self._act, "variations": self._act,
            "edit": self._edit_button, "delete": self._delete,
            "setting": self._setting, "forget": self._forget,
        }

    async def press(self, interaction: Interaction, press: Press) -> None:
        """A button or menu was used: its handler, under the runtime's guard."""
        handler = self.presses.get(press.kind)
        if handler is None:
            log.warning("no handler for a %r press", press.kind)
            return
        await self.rt.guard_interaction(interaction, handler(interaction, press))

    # ----- jobs from interactions ------------------------------------------------------------

    async def imagine(self, interaction: Interaction, prompt: str,
                      attachments: Sequence[discord.Attachment], options: Options) -> None:
        """/imagine: defer, download the references, run the job, deliver."""
        if not await self.rt.admit(interaction):
            return
        actor, chat = actor_of(interaction), interaction_chat(interaction)

        async def start(progress: ProgressCallback, place: Handoff | None) -> Reply:
            text, flags = parse_flags(prompt)
            if not text:
                raise EmptyPrompt()
            refs, links = await self._references(attachment_sources(attachments))
            chosen = dataclasses.replace(flags, model=options.model or flags.model,
                                         size=options.size or flags.size,
                                         aspect=options.aspect or flags.aspect)
            request = ImageRequest(actor=actor, chat=chat, prompt=text, references=refs,
                                   options=chosen, links=links)
            return await self.api.imagine(request, progress, place)

        await self._job(interaction, actor, start)

    async def open_edit(self, interaction: Interaction, locale: str, *,
                        turn_id: str | None = None, reply_to: MessageRef | None = None,
                        sources: Sequence[ImageSource] = ()) -> None:
        """Show the instruction modal (it must be the first response: no defer before it)."""

        async def submit(inner: Interaction, words: str) -> None:
            await self.rt.guard_interaction(inner, self._edit(
                inner, words, turn_id=turn_id, reply_to=reply_to, sources=sources))

        await interaction.response.send_modal(EditModal(self.api, locale, submit))

    async def _edit(self, interaction: Interaction, words: str, *, turn_id: str | None,
                    reply_to: MessageRef | None, sources: Sequence[ImageSource]) -> None:
        """The modal was submitted: edit a turn, a bound message, or the given images."""
        if not await self.rt.admit(interaction):
            return
        actor, chat = actor_of(interaction), interaction_chat(interaction)

        async def start(progress: ProgressCallback, place: Handoff | None) -> Reply:
            prompt, options = parse_flags(words)
            refs, links = await self._references(sources)
            request = ImageRequest(actor=actor, chat=chat, prompt=prompt, references=refs,
                                   options=options, kind="edit", parent_turn_id=turn_id,
                                   links=links)
            return await self.api.edit(request, reply_to, progress, place)

        await self._job(interaction, actor, start)

    async def _references(self, sources: Sequence[ImageSource]
                          ) -> tuple[tuple[ImageData, ...], tuple[ImageLink, ...]]:
        """Users' images: by URL where the core takes them so, else downloaded."""
        return await references(self.api, self.rt.session, sources, self.rt.max_input)

    async def _job(self, interaction: Interaction, actor: Actor, start: JobStart) -> None:
        """Defer publicly, run the job: progress edits, then the result in place, or the error."""

        async def edit(text: str) -> None:
            await interaction.edit_original_response(view=text_layout(text))

        out = self.rt.out
        began = time.monotonic()

        async def work() -> None:
            locale = await self.api.locale_for(actor)
            reporter = ProgressReporter(edit, partial(self.api.progress_text, locale),
                                        first_after=ProgressReporter.min_interval)
            place = handoff(interaction.channel_id, interaction.guild_id, interaction.user.id,
                            lambda: out.deferral(interaction))
            try:
                reply = await start(reporter, place)
            finally:
                resolved = await reporter.close()
            await out.result(interaction, reply, resolved=resolved, began=began,
                             in_place=not reporter.abandoned)

        await out.thinking(interaction)
        try:  # whatever goes wrong is told while the deferral is known to be public
            async with self.rt.tracked():
                await self.rt.guard_interaction(interaction, work(), actor)
        finally:
            out.forget(interaction)

    # ----- presses ---------------------------------------------------------------------------

    async def _owned(self, interaction: Interaction, press: Press) -> tuple[Actor, Action] | None:
        """A result's button: admitted and pressed by its owner (NotOwner is raised, else None)."""
        if not await self.rt.admit(interaction):
            return None
        action = press.action
        assert action is not None
        vouch = action.kind == "delete" and manages_messages(interaction)
        actor = actor_of(interaction, vouch=vouch)
        await self.api.owned(actor, action.turn_id)
        return actor, action

    async def _act(self, interaction: Interaction, press: Press) -> None:
        """Reroll, upscale or variations: a job."""
        if (owned := await self._owned(interaction, press)) is None:
            return
        actor, action = owned
        chat = interaction_chat(interaction)
        await self._job(interaction, actor, lambda progress, place: self.api.act(
            actor, chat, action, progress, place))

    async def _edit_button(self, interaction: Interaction, press: Press) -> None:
        """Edit: ask for the instruction."""
        if (owned := await self._owned(interaction, press)) is None:
            return
        actor, action = owned
        await self.open_edit(interaction, await self.api.locale_for(actor),
                             turn_id=action.turn_id)

    async def _delete(self, interaction: Interaction, press: Press) -> None:
        """Delete: the turn and the messages that show it."""
        if (owned := await self._owned(interaction, press)) is None:
            return
        actor, action = owned
        await interaction.response.defer(ephemeral=True, thinking=True)
        for ref in await self.api.delete(actor, action.turn_id):
            if ref.platform != PLATFORM:
                continue
            channel = self.rt.client.get_partial_messageable(int(ref.chat_id))
            with contextlib.suppress(discord.HTTPException):
                await channel.get_partial_message(int(ref.message_id)).delete()
        locale = await self.api.locale_for(actor)
        await self.rt.out.show(interaction, self.api.t(locale, "result.deleted"))

    async def _setting(self, interaction: Interaction, press: Press) -> None:
        """A /settings menu changed: save it and redraw the message."""
        await interaction.response.defer()
        actor = actor_of(interaction)
        await self.api.prefs.update(actor, press.name, press.value)
        text, view = await settings_panel(self.api, actor, await self.api.locale_for(actor))
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(content=text, view=view)

    async def _forget(self, interaction: Interaction, press: Press) -> None:
        """The /forget confirmation: erase the presser's history."""
        await interaction.response.defer()
        actor = actor_of(interaction)
        count = await self.api.forget(actor)
        locale = await self.api.locale_for(actor)
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(
                content=self.api.t(locale, "forget.done", count=count), view=None)

    # ----- replies to results ----------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        """A reply addressed to the bot edits the image it answers; everything else is ignored."""
        if not addressed(self.rt.client.user, message):
            return
        if not self.rt.allowed(message.guild.id if message.guild else None):
            return
        if not self.rt.accepting:
            return
        actor = author_of(message)
        async with self.rt.tracked():
            await self.rt.guard(actor, self._reply_edit(message, actor),
                                partial(self.rt.out.reply_text, message))

    async def _reply_edit(self, message: discord.Message, actor: Actor) -> None:
        chat = message_chat(message)
        if not (await self.api.group(chat)).reply_edits:
            return  # the server's admins turned reply edits off (/config reply-edits off)
        status = StatusReply(partial(self.rt.out.status, message))
        locale = await self.api.locale_for(actor)
        reporter = ProgressReporter(status.edit, partial(self.api.progress_text, locale))
        try:
            try:
                place = handoff(message.channel.id, message.guild.id if message.guild else None,
                                message.author.id, lambda: status.message_id, message.id)
                reply = await self._reply_job(message, actor, chat, reporter, place)
            finally:
                await reporter.close()
            await self.rt.out.reply_result(message, reply)
        finally:
            await status.remove()

    async def _reply_job(self, message: discord.Message, actor: Actor, chat: ChatRef,
                         progress: ProgressCallback, place: Handoff | None) -> Reply:
        me, sees_all = self.rt.client.user, self.rt.section.message_content_intent
        if not sees_all and withheld(message):
            # A ping-only reply to a slash command's result: Discord sends no words without
            # the privileged intent (inbound.py), so say how to ask instead of guessing.
            raise MentionToEdit(bot=me.display_name if me else "bot")
        target = replied_to(message)
        prompt, options = parse_flags(instruction(me, message.content))
        sources = attachment_sources(message.attachments)
        bound = await self.api.turn_for(target) is not None
        if not bound:  # someone's picture: it is the reference, the attachments come after
            original = await referenced(message)
            theirs = image_sources(original) if original is not None else []
            if not theirs and not sources and not sees_all and original is not None and (
                    original.author != me):
                raise UseEditMenu()  # its attachments were withheld; the menu gets them
            sources = [*theirs, *sources]
        refs, links = await self._references(sources)
        request = ImageRequest(actor=actor, chat=chat, prompt=prompt, references=refs,
                               options=options, kind="edit", links=links)
        return await self.api.edit(request, target if bound else None, progress, place)
