"""/describe, /history and the n / style defaults on Discord (issue 16).

/describe takes an attached image (or, from the "Describe image" message menu, the message's
image); its prompts come back numbered with one button each (``ibd:<id>:<n>``) that runs the
prompt as /imagine. /history answers privately with a components-v2 message: the page's list, its
previews in one Media Gallery, a numbered row of each result's buttons (the same ActionButtons a
result has, so they work after a restart) and Newer / Older (``ibh:<page>``), which redraws the
message. The two creation defaults get their own menus under /settings (``ib-make:n|style``):
Discord allows five action rows on a message and the settings panel already uses five.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands

from adapters.discord.handlers import Handlers
from adapters.discord.inbound import (
    actor_of,
    attachment_sources,
    download,
    image_sources,
    interaction_chat,
)
from adapters.discord.runtime import Runtime
from adapters.discord.widgets import ActionButton, Press, clip_text
from bot.api import Actor, BotApi, ImageRequest, NotFound, UserSettings

Interaction = discord.Interaction[Any]
DEFAULT_VALUE = "__default__"
#: Of a result's buttons, /history shows these (Edit and Delete stay on the result itself).
HISTORY_KINDS = ("reroll", "upscale", "variations")
PREVIEW_SIDE = 640


def _raise(interaction: Interaction, press: Press) -> None:
    interaction.client.dispatch("press", interaction, press)


class DescribeButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                     template=r"ibd:(?P<sid>[0-9a-f]{1,24}):(?P<n>[1-9])"):
    """Run /describe's prompt ``n`` as /imagine."""

    def __init__(self, sid: str, n: int, label: str = "▶") -> None:
        super().__init__(discord.ui.Button(label=label, custom_id=f"ibd:{sid}:{n}",
                                           style=discord.ButtonStyle.primary))
        self.sid, self.n = sid, n

    @classmethod
    async def from_custom_id(cls, interaction: Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> DescribeButton:
        """Rebuild the button from its custom_id."""
        return cls(match["sid"], int(match["n"]), getattr(item, "label", None) or "▶")

    async def callback(self, interaction: Interaction) -> None:
        """Raise the press."""
        _raise(interaction, Press("describe", name=self.sid, value=str(self.n)))


class PageButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"ibh:(?P<page>\d{1,6})"):
    """Newer / Older under a /history page."""

    def __init__(self, page: int, label: str = "…") -> None:
        super().__init__(discord.ui.Button(label=label, custom_id=f"ibh:{page}"))
        self.page = page

    @classmethod
    async def from_custom_id(cls, interaction: Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> PageButton:
        """Rebuild the button from its custom_id."""
        return cls(int(match["page"]), getattr(item, "label", None) or "…")

    async def callback(self, interaction: Interaction) -> None:
        """Raise the press."""
        _raise(interaction, Press("history", value=str(self.page)))


class MakeSelect(discord.ui.DynamicItem[discord.ui.Select[discord.ui.View]],
                 template=r"ib-make:(?P<name>n|style)"):
    """The /settings menus for images per request and the style preset."""

    def __init__(self, name: str, options: list[discord.SelectOption],
                 placeholder: str | None = None) -> None:
        super().__init__(discord.ui.Select(custom_id=f"ib-make:{name}", options=options,
                                           placeholder=placeholder))
        self.name = name

    @classmethod
    async def from_custom_id(cls, interaction: Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> MakeSelect:
        """Rebuild the menu from its custom_id."""
        return cls(match["name"], list(getattr(item, "options", [])))

    async def callback(self, interaction: Interaction) -> None:
        """Raise the choice."""
        values = self.item.values
        value = values[0] if values else DEFAULT_VALUE
        _raise(interaction, Press("make", name=self.name,
                                  value=None if value == DEFAULT_VALUE else value))


ITEMS = (DescribeButton, PageButton, MakeSelect)


def make_panel(api: BotApi, current: UserSettings, locale: str) -> tuple[str, discord.ui.View]:
    """The creation defaults: images per request and the style, with their menus."""
    view = discord.ui.View(timeout=None)
    default = api.t(locale, "discord.settings_default")
    style_name = (api.style_label(locale, current.style) if current.style
                  else api.t(locale, "settings.no_style"))
    for name, values in (("n", ["1", "2", "3", "4"]), ("style", api.style_names()[:24])):
        chosen = getattr(current, name)
        chosen = None if chosen is None else str(chosen)
        options = [discord.SelectOption(label=default, value=DEFAULT_VALUE, default=chosen is None)]
        options += [discord.SelectOption(label=api.style_label(locale, v) if name == "style"
                                         else v, value=v, default=v == chosen) for v in values]
        view.add_item(MakeSelect(name, options, api.t(locale, f"settings.{name}")))
    text = api.t(locale, "settings.creating", n=current.n or 1, style=style_name)
    return text, view


class Creating:
    """The commands, presses and renderings issue 16 adds to the Discord adapter."""

    def __init__(self, rt: Runtime, handlers: Handlers) -> None:
        self.rt = rt
        self.api = rt.api
        self.handlers = handlers
        handlers.presses.update({"describe": self._use_prompt, "history": self._page,
                                 "make": self._make})

    # ----- /describe ---------------------------------------------------------------------------

    async def describe(self, interaction: Interaction, sources: Sequence[Any]) -> None:
        """Prompts for the first image in ``sources``, with a button each."""
        if not await self.rt.admit(interaction):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        actor = actor_of(interaction)

        async def work() -> None:
            locale = await self.api.locale_for(actor)
            if not sources:
                await interaction.edit_original_response(content=self.api.t(locale,
                                                                            "describe.usage"))
                return
            [image] = await download(self.rt.session, list(sources)[:1], self.rt.max_input)
            described = await self.api.describe(actor, interaction_chat(interaction), image)
            view = discord.ui.View(timeout=None)
            for n in range(1, len(described.prompts) + 1):
                view.add_item(DescribeButton(described.id, n,
                                             self.api.t(described.locale, "button.use_prompt",
                                                        n=n)))
            await interaction.edit_original_response(content=clip_text(described.text, 2000),
                                                     view=view)

        await self.rt.guard_interaction(interaction, work(), actor)

    async def _use_prompt(self, interaction: Interaction, press: Press) -> None:
        if not await self.rt.admit(interaction):
            return
        actor, chat = actor_of(interaction), interaction_chat(interaction)
        prompt = await self.api.suggestion(actor, press.name, int(press.value or 0))
        await self.handlers._job(interaction, actor, lambda progress, place: self.api.imagine(
            ImageRequest(actor=actor, chat=chat, prompt=prompt), progress, place))

    # ----- /history ----------------------------------------------------------------------------

    async def history(self, interaction: Interaction, page: int = 1) -> None:
        """A page of the user's results, privately, with their buttons."""
        if not await self.rt.admit(interaction):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        actor = actor_of(interaction)

        async def work() -> None:
            view, files = await self._layout(actor, page)
            await interaction.edit_original_response(view=view, attachments=files)

        await self.rt.guard_interaction(interaction, work(), actor)

    async def _page(self, interaction: Interaction, press: Press) -> None:
        if not await self.rt.admit(interaction):
            return
        await interaction.response.defer()
        view, files = await self._layout(actor_of(interaction), int(press.value or 1))
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(view=view, attachments=files)

    async def _layout(self, actor: Actor, page: int) -> tuple[discord.ui.LayoutView,
                                                              list[discord.File]]:
        api = self.api
        shown = await api.history(actor, page)
        view = discord.ui.LayoutView(timeout=None)
        view.add_item(discord.ui.TextDisplay(clip_text(shown.text)))
        files: list[discord.File] = []
        for n, item in enumerate(shown.items, shown.first):
            try:
                image = (await api.result_images(actor, item.turn.id))[0]
            except (NotFound, IndexError):
                continue
            preview = await api.thumbnail(image, PREVIEW_SIDE)
            files.append(discord.File(io.BytesIO(preview.data), filename=f"{n}.{preview.extension}"))
        if files:
            gallery: discord.ui.MediaGallery[discord.ui.LayoutView] = discord.ui.MediaGallery()
            for file in files:
                gallery.add_item(media=file, description=file.filename.split(".")[0])
            view.add_item(gallery)
        for n, item in enumerate(shown.items, shown.first):
            row: discord.ui.ActionRow[discord.ui.LayoutView] = discord.ui.ActionRow()
            for action in [a for a in item.actions if a.kind in HISTORY_KINDS][:5]:
                row.add_item(ActionButton(action, f"{n} · {api.button_label(shown.locale, action)}"[:80]))
            if row.children:
                view.add_item(row)
        nav: discord.ui.ActionRow[discord.ui.LayoutView] = discord.ui.ActionRow()
        if shown.page > 1:
            nav.add_item(PageButton(shown.page - 1, api.t(shown.locale, "button.prev")))
        if shown.page < shown.pages:
            nav.add_item(PageButton(shown.page + 1, api.t(shown.locale, "button.next")))
        if nav.children:
            view.add_item(nav)
        return view, files

    # ----- /settings: n and style --------------------------------------------------------------

    async def settings_more(self, interaction: Interaction) -> None:
        """The creation defaults' menus, as a second private message under /settings."""
        actor = actor_of(interaction)
        locale = await self.api.locale_for(actor)
        text, view = make_panel(self.api, await self.api.prefs.get(actor), locale)
        with contextlib.suppress(discord.HTTPException):
            await interaction.followup.send(text, view=view, ephemeral=True)

    async def _make(self, interaction: Interaction, press: Press) -> None:
        await interaction.response.defer()
        actor = actor_of(interaction)
        saved = await self.api.prefs.update(actor, press.name, press.value)
        text, view = make_panel(self.api, saved, await self.api.locale_for(actor))
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(content=text, view=view)

    # ----- commands ----------------------------------------------------------------------------

    def commands(self, ls: Any) -> list[Any]:
        """/describe, /history and the "Describe image" message menu."""
        api = self.api

        @app_commands.command(name=ls(api, "discord.cmd.describe.name"),
                              description=ls(api, "discord.cmd.describe.description"))
        @app_commands.rename(image=ls(api, "discord.opt.image.name"))
        @app_commands.describe(image=ls(api, "discord.opt.image.description"))
        async def describe(interaction: Interaction, image: discord.Attachment) -> None:
            await self.describe(interaction, attachment_sources([image]))

        @app_commands.command(name=ls(api, "discord.cmd.history.name"),
                              description=ls(api, "discord.cmd.history.description"))
        @app_commands.rename(page=ls(api, "discord.opt.page.name"))
        @app_commands.describe(page=ls(api, "discord.opt.page.description"))
        async def history(interaction: Interaction,
                          page: app_commands.Range[int, 1, 10_000] = 1) -> None:
            await self.history(interaction, page)

        async def describe_message(interaction: Interaction, message: discord.Message) -> None:
            await self.describe(interaction, image_sources(message))

        menu = app_commands.ContextMenu(name=ls(api, "discord.menu.describe"),
                                        callback=describe_message)
        return [describe, history, menu]

