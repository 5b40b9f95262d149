"""Application commands: /imagine, the "Edit image" menu, /quota, /settings, /forget, /help, /admin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from adapters.discord.common import (
    actor_of,
    attachment_sources,
    chat_of,
    clip,
    download,
    error_reply,
    image_sources,
    is_moderator,
    message_ref,
)
from adapters.discord.render import run_interaction_job
from adapters.discord.translate import ls
from adapters.discord.views import settings_view
from bot.catalog import SIZE_ORDER, normalize_size
from bot.domain import Actor, ImageRequest, Options, Reply
from bot.errors import BotError, EmptyPrompt, NotAllowed
from bot.prompts import parse_flags

if TYPE_CHECKING:
    from adapters.discord.client import ImagineClient

Answer = tuple[str, discord.ui.View | None]
Make = Callable[[Actor, str], Awaitable[Answer]]
Interaction = discord.Interaction[Any]


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


async def answer(bot: ImagineClient, interaction: Interaction, make: Make, *,
                 vouch: bool = False) -> None:
    """Defer privately, compute the text (and menus), then show it in place of "thinking"."""
    if not await bot.admit(interaction):
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    actor = actor_of(interaction, vouch=vouch)
    locale = await bot.core.service.locale_for(actor)
    try:
        text, view = await make(actor, locale)
    except BotError as err:
        text, view = bot.core.presenter.error(locale, err), None
    if view is None:
        await interaction.edit_original_response(content=clip(text))
    else:
        await interaction.edit_original_response(content=clip(text), view=view)


async def imagine(bot: ImagineClient, interaction: Interaction, prompt: str,
                  attachments: Sequence[discord.Attachment], options: Options) -> None:
    """/imagine: defer, download the references, run the job, deliver."""
    if not await bot.admit(interaction):
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    core = bot.core
    actor = actor_of(interaction)
    chat = chat_of(interaction.channel_id or 0, interaction.guild_id,
                   nsfw=bool(getattr(interaction.channel, "nsfw", False)))  # age-restricted
    max_input = int(core.settings.limits.max_input_mb * 1_000_000)

    async def start(progress: Any) -> Reply:
        try:
            text, flags = parse_flags(prompt)
            if not text:
                raise EmptyPrompt()
            refs = await download(bot.session, attachment_sources(attachments), max_input)
        except BotError as err:
            return await error_reply(core, actor, err)
        chosen = Options(model=options.model or flags.model, size=options.size or flags.size,
                         aspect=options.aspect or flags.aspect)
        request = ImageRequest(actor=actor, chat=chat, prompt=text, references=refs,
                               options=chosen)
        return await core.api.attempt(actor, core.service.imagine(request, progress))

    await run_interaction_job(bot, interaction, await core.service.locale_for(actor), start)


def _imagine_command(bot: ImagineClient) -> app_commands.Command[Any, ..., None]:
    m = bot.core.messages
    catalog = bot.core.service.catalog
    sizes = _unique([s for spec in catalog.values() for s in spec.sizes])
    sizes.sort(key=lambda s: SIZE_ORDER.index(s) if s in SIZE_ORDER else len(SIZE_ORDER))
    aspects = _unique([a for spec in catalog.values() for a in spec.aspects])

    def choices(values: Sequence[str]) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=v, value=v) for v in values[:25]]

    opt = {n: ls(m, f"discord.opt.{n}.name") for n in
           ("prompt", "image1", "image2", "image3", "image4", "model", "size", "aspect")}
    desc = {n: ls(m, f"discord.opt.{n}.description") for n in opt}

    @app_commands.command(name=ls(m, "discord.cmd.imagine.name"),
                          description=ls(m, "discord.cmd.imagine.description"))
    @app_commands.rename(**opt)
    @app_commands.describe(**desc)
    @app_commands.choices(model=choices(list(catalog)), size=choices(sizes),
                          aspect=choices(aspects))
    async def imagine_cmd(interaction: Interaction, prompt: str,
                          image1: discord.Attachment | None = None,
                          image2: discord.Attachment | None = None,
                          image3: discord.Attachment | None = None,
                          image4: discord.Attachment | None = None,
                          model: str | None = None, size: str | None = None,
                          aspect: str | None = None) -> None:
        files = [a for a in (image1, image2, image3, image4) if a is not None]
        options = Options(model=model, size=normalize_size(size) if size else None, aspect=aspect)
        await imagine(bot, interaction, prompt, files, options)

    return imagine_cmd


def _simple_commands(bot: ImagineClient) -> list[app_commands.Command[Any, ..., None]]:
    m = bot.core.messages
    core = bot.core

    def command(key: str) -> Callable[[Any], app_commands.Command[Any, ..., None]]:
        return app_commands.command(name=ls(m, f"discord.cmd.{key}.name"),
                                    description=ls(m, f"discord.cmd.{key}.description"))

    @command("quota")
    async def quota(interaction: Interaction) -> None:
        async def make(actor: Actor, locale: str) -> Answer:
            chat = chat_of(interaction.channel_id or 0, interaction.guild_id)
            return await core.service.quota_text(actor, chat), None
        await answer(bot, interaction, make)

    @command("settings")
    async def settings(interaction: Interaction) -> None:
        async def make(actor: Actor, locale: str) -> Answer:
            current = await core.prefs.get(actor)
            view = settings_view(current, core.prefs, m, locale)
            return await bot.flows.settings_text(actor, locale), view
        await answer(bot, interaction, make)

    @command("forget")
    async def forget(interaction: Interaction) -> None:
        async def make(actor: Actor, locale: str) -> Answer:
            return bot.flows.forget_prompt(locale)
        await answer(bot, interaction, make)

    @command("help")
    async def help_cmd(interaction: Interaction) -> None:
        async def make(actor: Actor, locale: str) -> Answer:
            return m.t(locale, "help.text"), None
        await answer(bot, interaction, make)

    return [quota, settings, forget, help_cmd]


def _edit_menu(bot: ImagineClient) -> app_commands.ContextMenu:
    service = bot.core.service

    async def edit_image(interaction: Interaction, message: discord.Message) -> None:
        if not await bot.admit(interaction):
            return
        actor = actor_of(interaction)
        locale = await service.locale_for(actor)
        ref = message_ref(message.channel.id, message.id)
        if await service.turn_for(ref) is not None:
            await bot.flows.open_edit(interaction, locale, reply_to=ref)
            return
        sources = image_sources(message)
        if not sources:
            text = bot.core.messages.t(locale, "error.no_reference")
            await interaction.response.send_message(text, ephemeral=True)
            return
        await bot.flows.open_edit(interaction, locale, sources=sources)

    return app_commands.ContextMenu(name=ls(bot.core.messages, "discord.menu.edit"),
                                    callback=edit_image)


def _admin_group(bot: ImagineClient) -> app_commands.Group:
    m = bot.core.messages
    core = bot.core
    group = app_commands.Group(name=ls(m, "discord.cmd.admin.name"),
                               description=ls(m, "discord.cmd.admin.description"))
    user_opt = {"user": ls(m, "discord.opt.user.name")}
    user_desc = {"user": ls(m, "discord.opt.user.description")}

    def sub(key: str) -> Callable[[Any], app_commands.Command[Any, ..., None]]:
        return group.command(name=ls(m, f"discord.cmd.admin_{key}.name"),
                             description=ls(m, f"discord.cmd.admin_{key}.description"))

    def run(interaction: Interaction, work: Callable[[Actor, str], Awaitable[str]]) -> Awaitable[None]:
        async def make(actor: Actor, locale: str) -> Answer:
            return await work(actor, locale), None
        return answer(bot, interaction, make, vouch=is_moderator(interaction))

    @sub("grant")
    @app_commands.rename(**user_opt, credits=ls(m, "discord.opt.credits.name"))
    @app_commands.describe(**user_desc, credits=ls(m, "discord.opt.credits.description"))
    async def grant(interaction: Interaction, user: discord.User,
                    credits: app_commands.Range[int, 1, 1_000_000]) -> None:
        await run(interaction, lambda a, loc: core.admin.grant(a, f"discord:{user.id}", credits,
                                                               loc))

    @sub("limit")
    @app_commands.rename(**user_opt, daily=ls(m, "discord.opt.daily.name"),
                         monthly=ls(m, "discord.opt.monthly.name"))
    @app_commands.describe(**user_desc, daily=ls(m, "discord.opt.daily.description"),
                           monthly=ls(m, "discord.opt.monthly.description"))
    async def limit(interaction: Interaction, user: discord.User,
                    daily: app_commands.Range[int, 0, 1_000_000] | None = None,
                    monthly: app_commands.Range[int, 0, 10_000_000] | None = None) -> None:
        await run(interaction, lambda a, loc: core.admin.set_limits(
            a, f"discord:{user.id}", daily, monthly, loc))

    @sub("ban")
    @app_commands.rename(**user_opt)
    @app_commands.describe(**user_desc)
    async def ban(interaction: Interaction, user: discord.User) -> None:
        await run(interaction, lambda a, loc: core.admin.ban(a, f"discord:{user.id}", True, loc))

    @sub("unban")
    @app_commands.rename(**user_opt)
    @app_commands.describe(**user_desc)
    async def unban(interaction: Interaction, user: discord.User) -> None:
        await run(interaction, lambda a, loc: core.admin.ban(a, f"discord:{user.id}", False, loc))

    @sub("stats")
    async def stats(interaction: Interaction) -> None:
        await run(interaction, lambda a, loc: core.admin.stats(a, loc))

    @sub("sync")
    async def sync(interaction: Interaction) -> None:
        async def work(actor: Actor, locale: str) -> str:
            # Syncing is global: only operators from the config, not guild moderators.
            if not core.settings.is_admin(actor.key):
                raise NotAllowed()
            synced = await bot.tree.sync()
            return m.t(locale, "discord.admin_synced", count=len(synced))
        await run(interaction, work)

    return group


def register(bot: ImagineClient) -> None:
    """Add every command to the tree (syncing them with Discord is separate and explicit)."""
    section = bot.core.settings.discord
    contexts = app_commands.AppCommandContext(guild=True, dm_channel=section.allow_dms,
                                              private_channel=False)
    from adapters.discord.groupconfig import config_command  # it builds on answer() here

    entries: list[Any] = [_imagine_command(bot), *_simple_commands(bot), _edit_menu(bot),
                          _admin_group(bot), config_command(bot)]
    for entry in entries:
        entry.allowed_contexts = contexts
        bot.tree.add_command(entry)
