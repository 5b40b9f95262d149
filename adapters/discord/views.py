"""Persistent components: custom_ids carry all their state, so they work after a restart."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, get_args

import discord

from adapters.discord.common import bot_of
from bot.account import Preferences
from bot.domain import Action, ActionKind, Reply, UserSettings
from bot.messages import LOCALES, Messages

_KINDS = "|".join(get_args(ActionKind))
#: Matches exactly what Action.encode() produces: ``ib:<kind>:<turn>[:<size>]``.
ACTION_TEMPLATE = rf"ib:(?:{_KINDS}):[0-9A-Za-z_-]+(?::[0-9A-Za-z]+)?"
SETTINGS = ("model", "size", "aspect", "locale", "search")
DEFAULT_VALUE = "__default__"
_STYLES = {"upscale": discord.ButtonStyle.primary, "delete": discord.ButtonStyle.danger}
_LABEL_KEYS = {"reroll": "button.reroll", "upscale": "button.upscale",
               "variations": "button.variations", "edit": "button.edit", "delete": "button.delete"}


class ActionButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
                   template=ACTION_TEMPLATE):
    """Reroll, 2K/4K, Variations, Edit or Delete on a result."""

    def __init__(self, action: Action, label: str | None = None) -> None:
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label=label or action.kind, custom_id=action.encode(),
            style=_STYLES.get(action.kind, discord.ButtonStyle.secondary),
            row=1 if action.kind in ("edit", "delete") else 0)
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
        """Hand the press to the flows."""
        bot = bot_of(interaction)
        await bot.guarded(interaction, bot.flows.on_action(interaction, self.action))


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
        """Save the chosen value."""
        values = self.item.values
        value = values[0] if values else DEFAULT_VALUE
        bot = bot_of(interaction)
        await bot.guarded(interaction, bot.flows.on_setting(
            interaction, self.name, None if value == DEFAULT_VALUE else value))


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
        """Delete the presser's history."""
        bot = bot_of(interaction)
        await bot.guarded(interaction, bot.flows.on_forget(interaction))


DYNAMIC_ITEMS = (ActionButton, SettingSelect, ForgetButton)


def result_view(reply: Reply, messages: Messages) -> discord.ui.View:
    """The buttons under a result, labelled in the requester's language."""
    view = discord.ui.View(timeout=None)
    for action in reply.actions:
        label = messages.t(reply.locale, _LABEL_KEYS[action.kind], size=action.size or "",
                           cost=action.cost if action.cost is not None else "")
        view.add_item(ActionButton(action, label))
    return view


def forget_view(messages: Messages, locale: str) -> discord.ui.View:
    """The confirmation button for /forget."""
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetButton(messages.t(locale, "forget.confirm_button")))
    return view


def settings_view(current: UserSettings, prefs: Preferences, messages: Messages,
                  locale: str) -> discord.ui.View:
    """Five menus: model, size, aspect (of the chosen model), language and search."""
    view = discord.ui.View(timeout=None)
    default_label = messages.t(locale, "discord.settings_default")
    labels = {"model": "settings.model", "size": "settings.size", "aspect": "settings.aspect",
              "locale": "settings.language", "search": "settings.search"}
    for name in SETTINGS:
        chosen = getattr(current, name)
        values = prefs.choices(name, current.model)[:24]
        options = [discord.SelectOption(label=default_label, value=DEFAULT_VALUE,
                                        default=chosen is None)]
        for value in values:
            label = messages.t(locale, f"discord.language.{value}") if name == "locale" else value
            options.append(discord.SelectOption(label=label, value=value, default=value == chosen))
        placeholder = messages.t(locale, labels[name])
        view.add_item(SettingSelect(name, options, placeholder))
    return view


class EditModal(discord.ui.Modal):
    """Asks for the edit instruction, then hands it to ``submit``."""

    def __init__(self, messages: Messages, locale: str,
                 submit: Callable[[discord.Interaction[Any], str], Awaitable[None]]) -> None:
        super().__init__(title=messages.t(locale, "discord.edit_title")[:45], timeout=900)
        self._submit = submit
        self.instruction: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
            custom_id="instruction", style=discord.TextStyle.paragraph, max_length=1000,
            placeholder=messages.t(locale, "discord.edit_placeholder")[:100])
        self.add_item(discord.ui.Label(text=messages.t(locale, "discord.edit_label")[:45],
                                       component=self.instruction))

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        """Run the edit."""
        await self._submit(interaction, self.instruction.value)


def language_names(messages: Messages, locale: str) -> dict[str, str]:
    """Language names for the settings text."""
    return {loc: messages.t(locale, f"discord.language.{loc}") for loc in LOCALES}
