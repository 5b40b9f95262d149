"""/start, /help, /quota, /settings, /forget and the admin commands, with their menus."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Any

from telegram import CallbackQuery, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.ext import CallbackQueryHandler, CommandHandler, ContextTypes

from adapters.telegram import keyboards as kb
from adapters.telegram.handlers import ANSWER_LIMIT
from adapters.telegram.render import Target, clip, markup
from adapters.telegram.runtime import Runtime, target_of
from adapters.telegram.translate import PLATFORM, actor_of, chat_of
from bot.domain import Actor
from bot.errors import InvalidOption, NotAllowed

Work = Callable[[Message, Actor, list[str]], Coroutine[Any, Any, None]]
Callback = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]
_USER = re.compile(r"^(?:(telegram|discord):)?(\d{1,20})$")
_CREDITS = re.compile(r"-?[0-9]{1,30}")


class CommandHandlers:
    """Account and admin commands; each answers with one message."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def handlers(self) -> list[CommandHandler[Any, None] | CallbackQueryHandler[Any, None]]:
        """PTB handlers for every command and menu button."""
        commands: dict[str, Work] = {
            "start": self.start, "help": self.help, "quota": self.quota,
            "settings": self.settings, "forget": self.forget, "grant": self.grant,
            "stats": self.stats, "ban": self.ban, "unban": self.ban,
        }
        out: list[CommandHandler[Any, None] | CallbackQueryHandler[Any, None]] = [
            CommandHandler(name, self._wrap(name, work)) for name, work in commands.items()]
        out.append(CallbackQueryHandler(self.on_settings_button, pattern=r"^st:"))
        out.append(CallbackQueryHandler(self.on_forget_button, pattern=r"^fg:"))
        return out

    def _wrap(self, name: str, work: Work) -> Callback:
        async def callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            message, user = update.effective_message, update.effective_user
            if message is None or user is None or user.is_bot:
                return
            actor = actor_of(user)
            args = [name, *(context.args or [])]
            self.rt.run(self._checked(work, message, actor, args), actor, target_of(message),
                        f"/{name}")
        return callback

    async def _checked(self, work: Work, message: Message, actor: Actor,
                       args: list[str]) -> None:
        if not self.rt.allowed(message.chat, actor):
            raise NotAllowed()
        await work(message, actor, args)

    async def _say(self, message: Message, text: str,
                   keyboard: InlineKeyboardMarkup | None = None) -> None:
        await self.rt.renderer.text(target_of(message), text, keyboard)

    # ----- everyone ---------------------------------------------------------------------------

    def _help(self, locale: str) -> str:
        return (self.rt.t(locale, "help.text") + "\n\n"
                + self.rt.t(locale, "telegram.help_groups", bot=self.rt.username))

    async def start(self, message: Message, actor: Actor, args: list[str]) -> None:
        """Greeting and help."""
        locale = await self.rt.locale(actor)
        name = message.from_user.first_name if message.from_user else ""
        await self._say(message, self.rt.t(locale, "telegram.start", name=name) + "\n\n"
                        + self._help(locale))

    async def help(self, message: Message, actor: Actor, args: list[str]) -> None:
        """How to use the bot."""
        await self._say(message, self._help(await self.rt.locale(actor)))

    async def quota(self, message: Message, actor: Actor, args: list[str]) -> None:
        """Credits left, resets, running jobs."""
        await self._say(message, await self.rt.service.quota_text(actor, chat_of(message.chat)))

    async def settings(self, message: Message, actor: Actor, args: list[str]) -> None:
        """The defaults menu."""
        locale = await self.rt.locale(actor)
        await self._say(message, await self._settings_text(actor, locale),
                        kb.settings_menu(self.rt.core.messages, locale, int(actor.user_id)))

    async def forget(self, message: Message, actor: Actor, args: list[str]) -> None:
        """Ask before deleting the user's history."""
        locale = await self.rt.locale(actor)
        await self._say(message, self.rt.t(locale, "forget.confirm"),
                        kb.forget_keyboard(self.rt.core.messages, locale, int(actor.user_id)))

    # ----- admins -----------------------------------------------------------------------------

    @staticmethod
    def _target_user(message: Message, args: list[str]) -> str | None:
        """``telegram:ID`` from the first argument, or from the replied-to message's author."""
        if args:
            match = _USER.match(args[0])
            if match:
                return f"{match.group(1) or PLATFORM}:{match.group(2)}"
        reply = message.reply_to_message
        if reply is not None and reply.from_user is not None and not reply.from_user.is_bot:
            return f"{PLATFORM}:{reply.from_user.id}"
        return None

    async def grant(self, message: Message, actor: Actor, args: list[str]) -> None:
        """/grant <user> <credits> (or as a reply: /grant <credits>)."""
        locale = await self.rt.locale(actor)
        rest = args[1:]
        target = self._target_user(message, rest if len(rest) >= 2 else [])
        credits = rest[-1] if rest else ""
        # ASCII digits only: "²" passes isdigit() but not int(). The size limit is the core's.
        if target is None or not _CREDITS.fullmatch(credits) or len(rest) > 2:
            if not self.rt.service.is_admin(actor):
                raise NotAllowed()
            await self._say(message, self.rt.t(locale, "telegram.grant_usage"))
            return
        await self._say(message, await self.rt.core.admin.grant(actor, target, int(credits),
                                                                 locale))

    async def stats(self, message: Message, actor: Actor, args: list[str]) -> None:
        """Today's figures and the queue."""
        locale = await self.rt.locale(actor)
        await self._say(message, await self.rt.core.admin.stats(actor, locale))

    async def ban(self, message: Message, actor: Actor, args: list[str]) -> None:
        """/ban <user> or /unban <user>."""
        locale = await self.rt.locale(actor)
        target = self._target_user(message, args[1:])
        if target is None:
            if not self.rt.service.is_admin(actor):
                raise NotAllowed()
            await self._say(message, self.rt.t(locale, "telegram.ban_usage"))
            return
        await self._say(message, await self.rt.core.admin.ban(actor, target, args[0] == "ban",
                                                               locale))

    # ----- menus ------------------------------------------------------------------------------

    async def _settings_text(self, actor: Actor, locale: str) -> str:
        saved = await self.rt.core.prefs.get(actor)
        bot = self.rt.core.settings.bot
        language = kb.value_label(self.rt.core.messages, locale, "locale", saved.locale or locale)
        return self.rt.t(locale, "settings.title", model=saved.model or bot.default_model,
                         size=saved.size or bot.default_size,
                         aspect=saved.aspect or bot.default_aspect, locale=language,
                         search=saved.search or "off")

    def _menu_press(self, update: Update, owner: int | None,
                    work: Callable[[CallbackQuery, Actor], Coroutine[Any, Any, None]]) -> None:
        query = update.callback_query
        if query is None or query.message is None or owner is None:
            return
        actor = actor_of(query.from_user)
        target = Target(query.message.chat.id)

        async def press() -> None:
            if owner != query.from_user.id:
                locale = await self.rt.locale(actor)
                await query.answer(clip(self.rt.t(locale, "error.not_owner"), ANSWER_LIMIT))
                return
            await work(query, actor)

        self.rt.run(press(), actor, target, "menu")

    async def on_settings_button(self, update: Update,
                                 context: ContextTypes.DEFAULT_TYPE) -> None:
        """A /settings menu button."""
        data = kb.SettingsData.decode(update.callback_query.data or "") if (
            update.callback_query) else None

        async def work(query: CallbackQuery, actor: Actor) -> None:
            assert data is not None
            await self._settings_press(query, actor, data)

        self._menu_press(update, data.owner if data else None, work)

    async def _settings_press(self, query: CallbackQuery, actor: Actor,
                              data: kb.SettingsData) -> None:
        rt, messages = self.rt, self.rt.core.messages
        locale = await rt.locale(actor)
        keyboard = kb.settings_menu(messages, locale, data.owner)
        if data.op == "open" and data.name in kb.SETTINGS:
            saved = await rt.core.prefs.get(actor)
            choices = rt.core.prefs.choices(data.name, saved.model)
            text = rt.t(locale, "telegram.settings_pick",
                        name=kb.setting_label(messages, locale, data.name))
            keyboard = kb.settings_choices(messages, locale, data.owner, data.name, choices,
                                           getattr(saved, data.name))
        elif data.op == "set" and data.name in kb.SETTINGS:
            value = None if data.value == kb.DEFAULT else data.value
            try:
                await rt.core.prefs.update(actor, data.name, value)
            except InvalidOption as err:
                await query.answer(clip(rt.core.presenter.error(locale, err), ANSWER_LIMIT),
                                   show_alert=True)
                return
            locale = await rt.locale(actor)  # the language may just have changed
            shown = (kb.value_label(messages, locale, data.name, value) if value
                     else rt.t(locale, "telegram.settings_default"))
            text = (rt.t(locale, "settings.saved",
                         name=kb.setting_label(messages, locale, data.name), value=shown)
                    + "\n" + await self._settings_text(actor, locale))
            keyboard = kb.settings_menu(messages, locale, data.owner)
        else:
            text = await self._settings_text(actor, locale)
        await query.answer()
        await query.edit_message_text(markup(text), parse_mode=ParseMode.HTML,
                                      reply_markup=keyboard)

    async def on_forget_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Confirm or cancel /forget."""
        parsed = kb.parse_forget(update.callback_query.data or "") if (
            update.callback_query) else None

        async def work(query: CallbackQuery, actor: Actor) -> None:
            assert parsed is not None
            locale = await self.rt.locale(actor)
            if parsed[1]:
                count = await self.rt.service.forget(actor)
                text = self.rt.t(locale, "forget.done", count=count)
            else:
                text = self.rt.t(locale, "telegram.forget_cancelled")
            await query.answer()
            await query.edit_message_text(markup(text), parse_mode=ParseMode.HTML)

        self._menu_press(update, parsed[0] if parsed else None, work)
