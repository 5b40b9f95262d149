"""Application commands: /imagine, "Edit image", /quota, /settings, /forget, /help, /config, /admin.

Names and descriptions come from the message catalogs (``ls``); discord.py asks
:class:`CatalogTranslator` for the Chinese ones when the commands are synced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord
from discord import Locale, app_commands

from adapters.discord.handlers import Handlers
from adapters.discord.inbound import (
    actor_of,
    image_sources,
    interaction_chat,
    is_moderator,
    manages_server,
    message_ref,
)
from adapters.discord.runtime import Runtime
from adapters.discord.widgets import forget_prompt, settings_panel
from bot.api import GROUP_KEYS, SIZE_ORDER, Actor, BotApi, NotAllowed, Options

Interaction = discord.Interaction[Any]
Answer = tuple[str, discord.ui.View | None]
Command = app_commands.Command[Any, ..., None]
AfterSettings = Callable[[Interaction], Awaitable[None]]
#: Discord locales we have catalogs for.
_LOCALES = {Locale.chinese: "zh-Hans", Locale.taiwan_chinese: "zh-Hant"}


def ls(api: BotApi, key: str) -> app_commands.locale_str:
    """A translatable string: English text from the catalog, ``key`` for the other locales."""
    return app_commands.locale_str(api.t("en", key), key=key)


class CatalogTranslator(app_commands.Translator):
    """Looks up ``locale_str(..., key=...)`` in the zh-Hans / zh-Hant catalogs."""

    def __init__(self, api: BotApi) -> None:
        self._api = api

    async def translate(self, string: app_commands.locale_str, locale: Locale,
                        context: app_commands.TranslationContextTypes) -> str | None:
        """The catalog text, or None to keep the English one."""
        key = string.extras.get("key")
        catalog = _LOCALES.get(locale)
        if not key or catalog is None or not self._api.has_text(catalog, key):
            return None
        return self._api.t(catalog, key)


def _choices(values: Sequence[str]) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=v, value=v) for v in values[:25]]


def _imagine(rt: Runtime, handlers: Handlers) -> Command:
    api = rt.api
    sizes = list(dict.fromkeys(s for spec in api.models.values() for s in spec.sizes))
    sizes.sort(key=lambda s: SIZE_ORDER.index(s) if s in SIZE_ORDER else len(SIZE_ORDER))
    aspects = list(dict.fromkeys(a for spec in api.models.values() for a in spec.aspects))
    opt = {n: ls(api, f"discord.opt.{n}.name") for n in
           ("prompt", "image1", "image2", "image3", "image4", "model", "size", "aspect")}
    desc = {n: ls(api, f"discord.opt.{n}.description") for n in opt}

    @app_commands.command(name=ls(api, "discord.cmd.imagine.name"),
                          description=ls(api, "discord.cmd.imagine.description"))
    @app_commands.rename(**opt)
    @app_commands.describe(**desc)
    @app_commands.choices(model=_choices(list(api.models)), size=_choices(sizes),
                          aspect=_choices(aspects))
    async def imagine(interaction: Interaction, prompt: str,
                      image1: discord.Attachment | None = None,
                      image2: discord.Attachment | None = None,
                      image3: discord.Attachment | None = None,
                      image4: discord.Attachment | None = None,
                      model: str | None = None, size: str | None = None,
                      aspect: str | None = None) -> None:
        files = [a for a in (image1, image2, image3, image4) if a is not None]
        await handlers.imagine(interaction, prompt, files,
                               Options(model=model, size=size, aspect=aspect))

    return imagine


def _edit_menu(rt: Runtime, handlers: Handlers) -> app_commands.ContextMenu:
    api = rt.api

    async def edit_image(interaction: Interaction, message: discord.Message) -> None:
        if not await rt.admit(interaction):
            return
        locale = await api.locale_for(actor_of(interaction))
        ref = message_ref(message.channel.id, message.id)
        if await api.turn_for(ref) is not None:
            await handlers.open_edit(interaction, locale, reply_to=ref)
            return
        sources = image_sources(message)
        if not sources:
            await rt.out.say(interaction, api.t(locale, "error.no_reference"))
            return
        await handlers.open_edit(interaction, locale, sources=sources)

    return app_commands.ContextMenu(name=ls(api, "discord.menu.edit"), callback=edit_image)


def _account(rt: Runtime, after_settings: AfterSettings | None = None) -> list[Command]:
    api = rt.api

    def command(key: str) -> Callable[[Any], Command]:
        return app_commands.command(name=ls(api, f"discord.cmd.{key}.name"),
                                    description=ls(api, f"discord.cmd.{key}.description"))

    @command("quota")
    async def quota(interaction: Interaction) -> None:
        async def make(actor: Actor, locale: str) -> Answer:
            return await api.quota_text(actor, interaction_chat(interaction)), None
        await rt.answer(interaction, make)

    @command("settings")
    async def settings(interaction: Interaction) -> None:
        async def make(actor: Actor, locale: str) -> Answer:
            return await settings_panel(api, actor, locale)
        await rt.answer(interaction, make)
        if after_settings is not None:  # more menus than one message's five rows hold
            await after_settings(interaction)

    @command("forget")
    async def forget(interaction: Interaction) -> None:
        async def make(actor: Actor, locale: str) -> Answer:
            return forget_prompt(api, locale)
        await rt.answer(interaction, make)

    @command("help")
    async def help_(interaction: Interaction) -> None:
        async def make(actor: Actor, locale: str) -> Answer:
            return api.help_text(locale), None
        await rt.answer(interaction, make)

    @command("config")
    @app_commands.rename(setting=ls(api, "discord.opt.setting.name"),
                         value=ls(api, "discord.opt.value.name"))
    @app_commands.describe(setting=ls(api, "discord.opt.setting.description"),
                           value=ls(api, "discord.opt.value.description"))
    @app_commands.choices(setting=_choices([*GROUP_KEYS, "reset"]))
    async def config(interaction: Interaction, setting: str | None = None,
                     value: str | None = None) -> None:
        # Anyone may read a server's settings; changes need Manage Server (inbound.py).
        async def make(actor: Actor, locale: str) -> Answer:
            args = [setting, *(value or "").split()] if setting else []
            group = await api.configure_group(actor, interaction_chat(interaction), args,
                                              group_admin=manages_server(interaction))
            text = api.group_text(locale, group)
            return (api.t(locale, "group.saved") + "\n\n" + text if args else text), None
        await rt.answer(interaction, make)

    return [quota, settings, forget, help_, config]


def _admin(rt: Runtime, tree: app_commands.CommandTree[Any]) -> app_commands.Group:
    api = rt.api
    group = app_commands.Group(name=ls(api, "discord.cmd.admin.name"),
                               description=ls(api, "discord.cmd.admin.description"))
    user_opt = {"user": ls(api, "discord.opt.user.name")}
    user_desc = {"user": ls(api, "discord.opt.user.description")}

    def sub(key: str) -> Callable[[Any], Command]:
        return group.command(name=ls(api, f"discord.cmd.admin_{key}.name"),
                             description=ls(api, f"discord.cmd.admin_{key}.description"))

    def run(interaction: Interaction, work: Callable[[Actor, str], Awaitable[str]]
            ) -> Awaitable[None]:
        async def make(actor: Actor, locale: str) -> Answer:
            return await work(actor, locale), None
        vouch = is_moderator(interaction, rt.section.allowed_guilds)
        return rt.answer(interaction, make, vouch=vouch)

    @sub("grant")
    @app_commands.rename(**user_opt, credits=ls(api, "discord.opt.credits.name"))
    @app_commands.describe(**user_desc, credits=ls(api, "discord.opt.credits.description"))
    async def grant(interaction: Interaction, user: discord.User,
                    credits: app_commands.Range[int, 1, 1_000_000]) -> None:
        await run(interaction, lambda a, loc: api.admin.grant(a, f"discord:{user.id}", credits,
                                                              loc))

    @sub("limit")
    @app_commands.rename(**user_opt, daily=ls(api, "discord.opt.daily.name"),
                         monthly=ls(api, "discord.opt.monthly.name"))
    @app_commands.describe(**user_desc, daily=ls(api, "discord.opt.daily.description"),
                           monthly=ls(api, "discord.opt.monthly.description"))
    async def limit(interaction: Interaction, user: discord.User,
                    daily: app_commands.Range[int, 0, 1_000_000] | None = None,
                    monthly: app_commands.Range[int, 0, 10_000_000] | None = None) -> None:
        await run(interaction, lambda a, loc: api.admin.set_limits(
            a, f"discord:{user.id}", daily, monthly, loc))

    @sub("ban")
    @app_commands.rename(**user_opt)
    @app_commands.describe(**user_desc)
    async def ban(interaction: Interaction, user: discord.User) -> None:
        await run(interaction, lambda a, loc: api.admin.ban(a, f"discord:{user.id}", True, loc))

    @sub("unban")
    @app_commands.rename(**user_opt)
    @app_commands.describe(**user_desc)
    async def unban(interaction: Interaction, user: discord.User) -> None:
        await run(interaction, lambda a, loc: api.admin.ban(a, f"discord:{user.id}", False, loc))

    @sub("stats")
    async def stats(interaction: Interaction) -> None:
        await run(interaction, lambda a, loc: api.admin.stats(a, loc))

    @sub("sync")
    async def sync(interaction: Interaction) -> None:
        async def work(actor: Actor, locale: str) -> str:
            # Syncing is global: only operators from the config, not guild moderators.
            if not api.settings.is_admin(actor.key):
                raise NotAllowed()
            synced = await tree.sync()
            return api.t(locale, "discord.admin_synced", count=len(synced))
        await run(interaction, work)

    return group


def register(rt: Runtime, tree: app_commands.CommandTree[Any], handlers: Handlers,
             more: Sequence[Any] = (), after_settings: AfterSettings | None = None) -> None:
    """Add every command to ``tree`` (syncing them with Discord is separate and explicit)."""
    contexts = app_commands.AppCommandContext(guild=True, dm_channel=rt.section.allow_dms,
                                              private_channel=False)
    entries: list[Any] = [_imagine(rt, handlers), *_account(rt, after_settings),
                          _edit_menu(rt, handlers),
                          _admin(rt, tree), *more]
    for entry in entries:
        entry.allowed_contexts = contexts
        tree.add_command(entry)
