"""What happens after a press or a modal: buttons on results, edits, /settings menus, /forget."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord

from adapters.discord.common import (
    PLATFORM,
    ImageSource,
    actor_of,
    chat_of,
    clip,
    download,
    error_reply,
)
from adapters.discord.render import run_interaction_job, show
from adapters.discord.views import EditModal, forget_view, language_names, settings_view
from bot.domain import Action, Actor, ImageRequest, MessageRef, Reply
from bot.errors import BotError
from bot.prompts import parse_flags

if TYPE_CHECKING:
    from adapters.discord.client import ImagineClient


class Flows:
    """Interaction handlers shared by commands, buttons, menus and modals."""

    def __init__(self, bot: ImagineClient) -> None:
        self.bot = bot
        self.core = bot.core

    def _max_input(self) -> int:
        return int(self.core.settings.limits.max_input_mb * 1_000_000)

    # ----- results' buttons ------------------------------------------------------------------

    async def on_action(self, interaction: discord.Interaction[Any], action: Action) -> None:
        """Reroll / upscale / variations run a job; edit opens the modal; delete removes."""
        if not await self.bot.admit(interaction):
            return
        service = self.core.service
        vouch = action.kind == "delete" and bool(interaction.guild_id) and (
            interaction.permissions.manage_messages)
        actor = actor_of(interaction, vouch=vouch)
        try:
            await self.core.api.owned(actor, action.turn_id)
        except BotError as err:
            denied = await error_reply(self.core, actor, err)
            await interaction.response.send_message(clip(denied.text), ephemeral=True)
            return
        locale = await service.locale_for(actor)
        if action.kind == "edit":
            await self.open_edit(interaction, locale, turn_id=action.turn_id)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        if action.kind == "delete":
            await self._delete(interaction, actor, action.turn_id, locale)
            return
        chat = chat_of(interaction.channel_id or 0, interaction.guild_id)
        await run_interaction_job(self.bot, interaction, locale,
                                  lambda progress: self.core.api.attempt(
                                      actor, service.act(actor, chat, action, progress)))

    async def _delete(self, interaction: discord.Interaction[Any], actor: Actor, turn_id: str,
                      locale: str) -> None:
        try:
            refs = await self.core.service.delete(actor, turn_id)
        except BotError as err:
            await show(self.bot, interaction, (await error_reply(self.core, actor, err)).text)
            return
        for ref in refs:
            if ref.platform != PLATFORM:
                continue
            channel = self.bot.get_partial_messageable(int(ref.chat_id))
            with contextlib.suppress(discord.HTTPException):
                await channel.get_partial_message(int(ref.message_id)).delete()
        await show(self.bot, interaction, self.core.messages.t(locale, "result.deleted"))

    # ----- edits -----------------------------------------------------------------------------

    async def open_edit(self, interaction: discord.Interaction[Any], locale: str, *,
                        turn_id: str | None = None, reply_to: MessageRef | None = None,
                        sources: Sequence[ImageSource] = ()) -> None:
        """Show the instruction modal (it must be the first response: no defer before it)."""

        async def submit(inner: discord.Interaction[Any], instruction: str) -> None:
            await self.bot.guarded(inner, self.run_edit(
                inner, instruction, turn_id=turn_id, reply_to=reply_to, sources=sources))

        await interaction.response.send_modal(EditModal(self.core.messages, locale, submit))

    async def run_edit(self, interaction: discord.Interaction[Any], instruction: str, *,
                       turn_id: str | None, reply_to: MessageRef | None,
                       sources: Sequence[ImageSource]) -> None:
        """The modal was submitted: edit a turn, a bound message, or the given images."""
        if not await self.bot.admit(interaction):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        actor = actor_of(interaction)
        chat = chat_of(interaction.channel_id or 0, interaction.guild_id)
        service = self.core.service

        async def start(progress: Any) -> Reply:
            try:
                prompt, options = parse_flags(instruction)
                refs = await download(self.bot.session, sources, self._max_input())
            except BotError as err:
                return await error_reply(self.core, actor, err)
            request = ImageRequest(actor=actor, chat=chat, prompt=prompt, references=refs,
                                   options=options, kind="edit", parent_turn_id=turn_id)
            return await self.core.api.attempt(
                actor, service.edit(request, reply_to=reply_to, progress=progress))

        await run_interaction_job(self.bot, interaction, await service.locale_for(actor), start)

    # ----- /settings and /forget -------------------------------------------------------------

    async def settings_text(self, actor: Actor, locale: str) -> str:
        """The /settings headline with the actor's current defaults."""
        current = await self.core.prefs.get(actor)
        bot = self.core.settings.bot
        names = language_names(self.core.messages, locale)
        return self.core.messages.t(
            locale, "settings.title", model=current.model or bot.default_model,
            size=current.size or bot.default_size, aspect=current.aspect or bot.default_aspect,
            locale=names.get(current.locale or "", current.locale or "—"),
            search=current.search or "off")

    async def on_setting(self, interaction: discord.Interaction[Any], name: str,
                         value: str | None) -> None:
        """A /settings menu changed: save it and redraw the message."""
        await interaction.response.defer()
        actor = actor_of(interaction)
        try:
            current = await self.core.prefs.update(actor, name, value)
        except BotError as err:
            await interaction.followup.send(clip((await error_reply(self.core, actor, err)).text),
                                            ephemeral=True)
            return
        locale = await self.core.service.locale_for(actor)
        view = settings_view(current, self.core.prefs, self.core.messages, locale)
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(
                content=await self.settings_text(actor, locale), view=view)

    async def on_forget(self, interaction: discord.Interaction[Any]) -> None:
        """The /forget confirmation was pressed."""
        await interaction.response.defer()
        actor = actor_of(interaction)
        count = await self.core.service.forget(actor)
        locale = await self.core.service.locale_for(actor)
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(
                content=self.core.messages.t(locale, "forget.done", count=count), view=None)

    def forget_prompt(self, locale: str) -> tuple[str, discord.ui.View]:
        """The /forget question and its button."""
        messages = self.core.messages
        return messages.t(locale, "forget.confirm"), forget_view(messages, locale)
