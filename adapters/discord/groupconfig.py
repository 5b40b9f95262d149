"""/config on a Discord server: anyone may read it; changes need Manage Server.

The permission is read from the interaction, whose ``member.permissions`` Discord itself computes
for the invoking member in that channel
(https://discord.com/developers/docs/interactions/receiving-and-responding#interaction-object),
never from anything the member typed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from adapters.discord.commands import Answer, answer
from adapters.discord.common import chat_of
from adapters.discord.translate import ls
from bot.domain import Actor
from bot.groups import KEYS, describe

if TYPE_CHECKING:
    from adapters.discord.client import ImagineClient


def manages_server(interaction: discord.Interaction[Any]) -> bool:
    """Manage Server in this guild, as Discord resolved it for the interaction."""
    return interaction.guild_id is not None and interaction.permissions.manage_guild


def config_command(bot: ImagineClient) -> app_commands.Command[Any, ..., None]:
    """``/config [setting] [value]``."""
    m = bot.core.messages

    @app_commands.command(name=ls(m, "discord.cmd.config.name"),
                          description=ls(m, "discord.cmd.config.description"))
    @app_commands.rename(setting=ls(m, "discord.opt.setting.name"),
                         value=ls(m, "discord.opt.value.name"))
    @app_commands.describe(setting=ls(m, "discord.opt.setting.description"),
                           value=ls(m, "discord.opt.value.description"))
    @app_commands.choices(setting=[app_commands.Choice(name=k, value=k)
                                   for k in (*KEYS, "reset")])
    async def config(interaction: discord.Interaction[Any], setting: str | None = None,
                     value: str | None = None) -> None:
        async def make(actor: Actor, locale: str) -> Answer:
            chat = chat_of(interaction.channel_id or 0, interaction.guild_id)
            args = [setting, *(value or "").split()] if setting else []
            group = await bot.core.service.groups.configure(
                actor, chat, args, group_admin=manages_server(interaction))
            text = describe(m.t, locale, group)
            return (m.t(locale, "group.saved") + "\n\n" + text if args else text), None
        await answer(bot, interaction, make)

    return config
