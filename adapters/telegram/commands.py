"""/start, /help, /quota, /settings, /forget, /config and the admin commands, with their menus.

/config: anyone may read it; changes need a chat administrator, asked of Telegram (getChatMember:
status ``administrator`` or ``creator``, https://core.telegram.org/bots/api#getchatmember), never
taken from the message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Any

from telegram import InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatMemberStatus, ParseMode
from telegram.ext import CallbackQueryHandler, CommandHandler, ContextTypes

from adapters.telegram import widgets as kb
from adapters.telegram.creating import Creating
from adapters.telegram.deliver import markup
from adapters.telegram.inbound import PLATFORM, Target, actor_of, chat_of, target_of, thread_of
from adapters.telegram.runtime import Press, Runtime
from bot.api import Actor, NotAllowed

Work = Callable[[Message, Actor, list[str]], Coroutine[Any, Any, None]]
MenuWork = Callable[[Press, Actor], Coroutine[Any, Any, None]]
Callback = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]
_USER = re.compile(r"^(?:(telegram|discord):)?(\d{1,20})$")
_CREDITS = re.compile(r"-?[0-9]{1,30}")
_CHAT_ADMIN = (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)


class CommandHandlers:
    """Account, group and admin commands; each answers with one message."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.api = rt.api

    def handlers(self) -> list[CommandHandler[Any, None] | CallbackQueryHandler[Any, None]]:
        """PTB handlers for every command and menu button."""
        commands: dict[str, Work] = {
            "start": self.start, "help": self.help, "quota": self.quota,
            "settings": self.settings, "forget": self.forget, "config": self.config,
            "grant": self.grant, "stats": self.stats, "ban": self.ban, "unban": self.ban,
        }
        out: list[CommandHandler[Any, None] | CallbackQueryHandler[Any, None]] = [
            CommandHandler(name, self._wrap(name, work)) for name, work in commands.items()]
        out.append(CallbackQueryHandler(self.on_settings_button, pattern=r"^st:"))
        out.append(CallbackQueryHandler(self.on_forget_button, pattern=r"^fg:"))
        out.append(CallbackQueryHandler(self.on_creating_button, pattern=r"^ib[dh]:"))
        return out

    async def on_creating_button(self, update: Update,
                                 context: ContextTypes.DEFAULT_TYPE) -> None:
        """A /describe prompt's button (``ibd:``) or a /history page's Newer / Older (``ibh:``)."""
        query = update.callback_query
        if query is None:
            return
        creating = Creating(self.rt)
        if (query.data or "").startswith("ibd:"):
            creating.on_describe_button(query)
        else:
            creating.on_history_button(query)

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
        if not self.rt.allowed(message.chat.id, actor):
            raise NotAllowed()
        await work(message, actor, args)

    async def _say(self, message: Message, text: str,
                   keyboard: InlineKeyboardMarkup | None = None) -> None:
        await self.rt.send.text(target_of(message), text, keyboard)

    # ----- everyone ---------------------------------------------------------------------------

    def _help(self, locale: str) -> str:
        return (self.api.help_text(locale) + "\n\n"
                + self.api.t(locale, "telegram.help_groups", bot=self.rt.username))

    async def start(self, message: Message, actor: Actor, args: list[str]) -> None:
        """Greeting and help."""
        locale = await self.api.locale_for(actor)
        name = message.from_user.first_name if message.from_user else ""
        await self._say(message, self.api.t(locale, "telegram.start", name=name) + "\n\n"
                        + self._help(locale))

    async def help(self, message: Message, actor: Actor, args: list[str]) -> None:
        """How to use the bot."""
        await self._say(message, self._help(await self.api.locale_for(actor)))

    async def quota(self, message: Message, actor: Actor, args: list[str]) -> None:
        """Credits left, resets, running jobs."""
        await self._say(message, await self.api.quota_text(actor, chat_of(message.chat)))

    async def settings(self, message: Message, actor: Actor, args: list[str]) -> None:
        """The defaults menu."""
        locale = await self.api.locale_for(actor)
        await self._say(message, await self._settings_text(actor, locale),
                        kb.settings_menu(self.api.t, locale, int(actor.user_id)))

    async def forget(self, message: Message, actor: Actor, args: list[str]) -> None:
        """Ask before deleting the user's history."""
        locale = await self.api.locale_for(actor)
        await self._say(message, self.api.t(locale, "forget.confirm"),
                        kb.forget_keyboard(self.api.t, locale, int(actor.user_id)))

    async def config(self, message: Message, actor: Actor, args: list[str]) -> None:
        """/config: read the group's policy (no arguments) or change one setting."""
        rest = args[1:]
        chat = chat_of(message.chat, thread_of(message))
        admin = bool(rest) and await self._chat_admin(message.chat.id, int(actor.user_id))
        group = await self.api.configure_group(actor, chat, rest, group_admin=admin)
        locale = await self.api.locale_for(actor)
        text = self.api.group_text(locale, group)
        if rest:
            text = self.api.t(locale, "group.saved") + "\n\n" + text
        await self._say(message, text)

    async def _chat_admin(self, chat_id: int, user_id: int) -> bool:
        member = await self.rt.bot.get_chat_member(chat_id, user_id)
        return member.status in _CHAT_ADMIN

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
        locale = await self.api.locale_for(actor)
        rest = args[1:]
        target = self._target_user(message, rest if len(rest) >= 2 else [])
        credits = rest[-1] if rest else ""
        # ASCII digits only: "²" passes isdigit() but not int(). The size limit is the core's.
        if target is None or not _CREDITS.fullmatch(credits) or len(rest) > 2:
            if not self.api.is_admin(actor):
                raise NotAllowed()
            await self._say(message, self.api.t(locale, "telegram.grant_usage"))
            return
        await self._say(message, await self.api.admin.grant(actor, target, int(credits), locale))

    async def stats(self, message: Message, actor: Actor, args: list[str]) -> None:
        """Today's figures and the queue."""
        locale = await self.api.locale_for(actor)
        await self._say(message, await self.api.admin.stats(actor, locale))

    async def ban(self, message: Message, actor: Actor, args: list[str]) -> None:
        """/ban <user> or /unban <user>."""
        locale = await self.api.locale_for(actor)
        target = self._target_user(message, args[1:])
        if target is None:
            if not self.api.is_admin(actor):
                raise NotAllowed()
            await self._say(message, self.api.t(locale, "telegram.ban_usage"))
            return
        await self._say(message, await self.api.admin.ban(actor, target, args[0] == "ban",
                                                           locale))

    # ----- menus ------------------------------------------------------------------------------

    async def _settings_text(self, actor: Actor, locale: str) -> str:
        shown = await self.api.shown_settings(actor)
        language = kb.value_label(self.api.t, locale, "locale", shown.locale or locale)
        style = (kb.value_label(self.api.t, locale, "style", shown.style) if shown.style
                 else self.api.t(locale, "settings.no_style"))
        return (self.api.t(locale, "settings.title", model=shown.model, size=shown.size,
                           aspect=shown.aspect, locale=language, search=shown.search) + "\n"
                + self.api.t(locale, "settings.creating", n=shown.n, style=style))

    def _menu_press(self, update: Update, owner: int | None, work: MenuWork, *,
                    alert: bool = False) -> None:
        """Run a menu button's work under the guard; only the menu's owner may press it."""
        query = update.callback_query
        if query is None or query.message is None or owner is None:
            return
        actor = actor_of(query.from_user)
        press = Press(query, alert=alert)

        async def checked() -> None:
            if owner != query.from_user.id:
                locale = await self.api.locale_for(actor)
                await press.answer(self.api.t(locale, "error.not_owner"))
                return
            await work(press, actor)

        self.rt.run(checked(), actor, Target(query.message.chat.id), "menu", press)

    async def on_settings_button(self, update: Update,
                                 context: ContextTypes.DEFAULT_TYPE) -> None:
        """A /settings menu button (a refused value is told as an alert)."""
        data = kb.SettingsData.decode(update.callback_query.data or "") if (
            update.callback_query) else None

        async def work(press: Press, actor: Actor) -> None:
            assert data is not None
            await self._settings_press(press, actor, data)

        self._menu_press(update, data.owner if data else None, work, alert=True)

    async def _settings_press(self, press: Press, actor: Actor, data: kb.SettingsData) -> None:
        api, t = self.api, self.api.t
        locale = await api.locale_for(actor)
        keyboard = kb.settings_menu(t, locale, data.owner)
        if data.op == "open" and data.name in kb.SETTINGS:
            saved = await api.prefs.get(actor)
            choices = api.prefs.choices(data.name, saved.model)
            text = t(locale, "telegram.settings_pick", name=kb.setting_label(t, locale, data.name))
            current = getattr(saved, data.name)
            keyboard = kb.settings_choices(t, locale, data.owner, data.name, choices,
                                           None if current is None else str(current))
        elif data.op == "set" and data.name in kb.SETTINGS:
            value = None if data.value == kb.DEFAULT else data.value
            await api.prefs.update(actor, data.name, value)  # InvalidOption: the guard's alert
            locale = await api.locale_for(actor)  # the language may just have changed
            shown = (kb.value_label(t, locale, data.name, value) if value
                     else t(locale, "telegram.settings_default"))
            text = (t(locale, "settings.saved", name=kb.setting_label(t, locale, data.name),
                      value=shown) + "\n" + await self._settings_text(actor, locale))
            keyboard = kb.settings_menu(t, locale, data.owner)
        else:
            text = await self._settings_text(actor, locale)
        await press.answer()
        await press.query.edit_message_text(markup(text), parse_mode=ParseMode.HTML,
                                            reply_markup=keyboard)

    async def on_forget_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Confirm or cancel /forget."""
        parsed = kb.parse_forget(update.callback_query.data or "") if (
            update.callback_query) else None

        async def work(press: Press, actor: Actor) -> None:
            assert parsed is not None
            locale = await self.api.locale_for(actor)
            if parsed[1]:
                count = await self.api.forget(actor)
                text = self.api.t(locale, "forget.done", count=count)
            else:
                text = self.api.t(locale, "telegram.forget_cancelled")
            await press.answer()
            await press.query.edit_message_text(markup(text), parse_mode=ParseMode.HTML)

        self._menu_press(update, parsed[0] if parsed else None, work)
