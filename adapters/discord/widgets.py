"""Layouts, buttons, menus and the edit modal; custom_ids carry all state, so they survive a restart.

A pressed component becomes a :class:`Press` raised as the client event ``press``
(``on_press``), which the handlers dispatch by ``Press.kind``. The components are discord.py
``DynamicItem`` s: rebuilt from the custom_id alone, so discord.py keeps nothing per message
(for a components-v2 message too: discord.py rebuilds a ``LayoutView`` from the message).

Results and progress are components-v2 messages (discord.py 2.6+ ``ui.LayoutView``; the
message flag ``1 << 15``, https://discord.com/developers/docs/components/reference): the text
in a Text Display, the images in one Media Gallery of ``attachment://`` files, the buttons in
action rows under it. Once a message has the flag it "can't be removed from that message", so a
message that shows progress is v2 from its first edit and every later text on it is too.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import discord

from bot.api import Action, Actor, BotApi, Reply, UserSettings

#: Action.encode()'s shape, ``ib:<kind>:<turn>[:<size>]``; Action.decode() has the final word.
ACTION_TEMPLATE = r"ib:[a-z]+:[0-9A-Za-z_-]+(?::[0-9A-Za-z]+)?"
SETTINGS = ("model", "size", "aspect", "locale", "search")
DEFAULT_VALUE = "__default__"
_STYLES = {"upscale": discord.ButtonStyle.primary, "delete": discord.ButtonStyle.danger}
#: discord.py's LayoutView: "a maximum of 4000 display characters across all its items".
TEXT_LIMIT = 4000
#: A media gallery item's alt text ("max 1024 characters", components/reference#media-gallery).
ALT_LIMIT = 1024
_SETTING_KEYS = {"model": "settings.model", "size": "settings.size", "aspect": "settings.aspect",
                 "locale": "settings.language", "search": "settings.search"}


@dataclass(frozen=True, slots=True)
class Press:
    """What a pressed component asks for.

    ``kind`` is an action's kind (``reroll``, ``upscale``, ``variations``, ``edit``, ``delete``)
    with ``action`` set, ``setting`` with ``name`` and ``value`` (None: back to the default), or
    ``forget``.
    """

    kind: str
    action: Action | None = None
    name: str = ""
    value: str | None = None


def _raise(interaction: discord.Interaction[Any], press: Press) -> None:
    # Client.dispatch runs the client's ``on_press`` in a task of its own, as for any gateway
    # event; the components know nothing of what handles them.
    interaction.client.dispatch("press", interaction, press)


class ActionButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=ACTION_TEMPLATE):
    """Reroll, 2K/4K, Variations, Edit or Delete on a result."""

    def __init__(self, action: Action, label: str | None = None) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=label or action.kind, custom_id=action.encode(),
            style=_STYLES.get(action.kind, discord.ButtonStyle.secondary))
        super().__init__(button)
        self.action = action

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str], /) -> ActionButton:
        """Rebuild the button from a pressed custom_id."""
        action = Action.decode(match.group(0))
        if action is None:
            raise ValueError(f"not an action: {match.group(0)!r}")
        return cls(action, getattr(item, "label", None))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Raise the press."""
        _raise(interaction, Press(self.action.kind, action=self.action))


class SettingSelect(discord.ui.DynamicItem[discord.ui.Select[discord.ui.View]],
                    template=r"ib-set:(?P<name>model|size|aspect|locale|search)"):
    """One /settings menu; the choice applies to whoever uses it (the message is ephemeral)."""

    def __init__(self, name: str, options: list[discord.SelectOption],
                 placeholder: str | None = None) -> None:
        select: discord.ui.Select[discord.ui.View] = discord.ui.Select(
            custom_id=f"ib-set:{name}", options=options, placeholder=placeholder)
        super().__init__(select)
        self.name = name

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str], /) -> SettingSelect:
        """Rebuild the menu from its custom_id (options come from the message)."""
        return cls(match["name"], list(getattr(item, "options", [])))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Raise the choice."""
        values = self.item.values
        value = values[0] if values else DEFAULT_VALUE
        _raise(interaction, Press("setting", name=self.name,
                                  value=None if value == DEFAULT_VALUE else value))


class ForgetButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
                   template=r"ib-forget"):
    """The /forget confirmation."""

    def __init__(self, label: str = "OK") -> None:
        super().__init__(discord.ui.Button(label=label, custom_id="ib-forget",
                                           style=discord.ButtonStyle.danger))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str], /) -> ForgetButton:
        """Rebuild the button."""
        return cls(getattr(item, "label", None) or "OK")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Raise the confirmation."""
        _raise(interaction, Press("forget"))


#: Registered with the client once, so presses on messages from before a restart still work.
DYNAMIC_ITEMS = (ActionButton, SettingSelect, ForgetButton)


def _row(action: Action, batch: bool) -> int:
    """A result's buttons in rows of at most five (Discord's limit for an action row).

    One result: Reroll, sizes and Variations, then Edit and Delete. A batch of up to four:
    U1..U4, then V1..V4, then the rest
    (https://discord.com/developers/docs/components/reference#action-row).
    """
    if not batch:
        return 1 if action.kind in ("edit", "delete") else 0
    if action.index is not None:
        return 0 if action.kind == "upscale" else 1
    return 2


def text_layout(text: str) -> discord.ui.LayoutView:
    """A components-v2 message that only says ``text`` (progress, "done", an error)."""
    view = discord.ui.LayoutView(timeout=None)
    view.add_item(discord.ui.TextDisplay(clip_text(text)))
    return view


def result_layout(api: BotApi, reply: Reply, text: str,
                  files: Sequence[discord.File]) -> discord.ui.LayoutView:
    """A result: ``text``, then every image in one gallery, then the buttons in rows.

    A batch's U1-U4 and V1-V4 act on the gallery's images in order; one Reroll makes the batch
    again (Reply.candidates, Action.index / Action.batch).
    """
    view = discord.ui.LayoutView(timeout=None)
    view.add_item(discord.ui.TextDisplay(clip_text(text)))
    if files:
        alt = clip_text(reply.text.splitlines()[0] if reply.text else "", ALT_LIMIT) or None
        gallery: discord.ui.MediaGallery[discord.ui.LayoutView] = discord.ui.MediaGallery()
        for file in files:
            gallery.add_item(media=file, description=alt)
        view.add_item(gallery)
    rows: dict[int, discord.ui.ActionRow[discord.ui.LayoutView]] = {}
    batch = any(action.index is not None for action in reply.actions)
    for action in reply.actions:
        label = api.button_label(reply.locale, action)  # U2 · 4K (24), V3, Reroll all: shared
        row = rows.setdefault(_row(action, batch), discord.ui.ActionRow())
        row.add_item(ActionButton(action, label))
    for _, row in sorted(rows.items()):
        view.add_item(row)
    return view


def clip_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` cut to ``limit`` characters (the last one an ellipsis when cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def forget_prompt(api: BotApi, locale: str) -> tuple[str, discord.ui.View]:
    """The /forget question and its confirmation button."""
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetButton(api.t(locale, "forget.confirm_button")))
    return api.t(locale, "forget.confirm"), view


async def settings_panel(api: BotApi, actor: Actor, locale: str) -> tuple[str, discord.ui.View]:
    """The /settings headline and five menus: model, size, aspect, language and search."""
    shown = await api.shown_settings(actor)
    language = api.t(locale, f"discord.language.{shown.locale}") if shown.locale else "—"
    text = api.t(locale, "settings.title", model=shown.model, size=shown.size,
                 aspect=shown.aspect, locale=language, search=shown.search)
    return text, _settings_view(api, await api.prefs.get(actor), locale)


def _settings_view(api: BotApi, current: UserSettings, locale: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    default_label = api.t(locale, "discord.settings_default")
    for name in SETTINGS:
        chosen = getattr(current, name)
        values = api.prefs.choices(name, current.model)[:24]  # 25 options with the default
        options = [discord.SelectOption(label=default_label, value=DEFAULT_VALUE,
                                        default=chosen is None)]
        for value in values:
            label = api.t(locale, f"discord.language.{value}") if name == "locale" else value
            options.append(discord.SelectOption(label=label, value=value, default=value == chosen))
        view.add_item(SettingSelect(name, options, api.t(locale, _SETTING_KEYS[name])))
    return view


class EditModal(discord.ui.Modal):
    """Asks for the edit instruction, then hands it to ``submit``."""

    def __init__(self, api: BotApi, locale: str,
                 submit: Callable[[discord.Interaction[Any], str], Awaitable[None]]) -> None:
        super().__init__(title=api.t(locale, "discord.edit_title")[:45], timeout=900)
        self._submit = submit
        self.instruction: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
            custom_id="instruction", style=discord.TextStyle.paragraph, max_length=1000,
            placeholder=api.t(locale, "discord.edit_placeholder")[:100])
        self.add_item(discord.ui.Label(text=api.t(locale, "discord.edit_label")[:45],
                                       component=self.instruction))

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        """Run the edit."""
        await self._submit(interaction, self.instruction.value)
