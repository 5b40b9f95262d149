"""The port's words: messages, errors, progress, buttons and style names in a user's language.

Part of :class:`bot.api.BotApi` (adapters import it from there, never from here).
"""

from __future__ import annotations

from typing import Any

from bot.domain import Action, Actor, Progress, Reply
from bot.errors import Banned, BotError
from bot.groups import GroupSettings, describe
from bot.messages import Messages
from bot.present import Presenter, progress_text
from bot.results import button_label
from bot.service import ImagineService


class WordsApi:
    """What an adapter shows people, translated; mixed into :class:`bot.api.BotApi`."""

    _service: ImagineService
    _messages: Messages
    _presenter: Presenter

    def t(self, locale: str | None, key: str, /, **params: Any) -> str:
        """A message from the catalogs in ``locale`` (English when it lacks the key)."""
        return self._messages.t(locale, key, **params)

    def has_text(self, locale: str, key: str) -> bool:
        """Whether ``locale``'s own catalog has ``key`` (t() would otherwise fall back to English)."""
        return key in self._messages.keys(locale)

    def error_text(self, locale: str, err: BotError) -> str:
        """``err`` as a sentence for a user."""
        return self._presenter.error(locale, err)

    async def error_reply(self, actor: Actor, err: BotError) -> Reply:
        """What to show ``actor`` for ``err`` (empty text: say nothing, e.g. a ban told before)."""
        locale = await self.locale_for(actor)
        if isinstance(err, Banned):
            store = self._service.store
            if (await store.get_user(actor.key)).ban_notified:
                return Reply(text="", error=err.key, locale=locale)
            await store.set_user_flags(actor.key, ban_notified=True)
        return Reply(text=self.error_text(locale, err), error=err.key, locale=locale)

    def button_label(self, locale: str, action: Action) -> str:
        """A result button's label, the same on every platform (U2 · 4K (24), V3, Reroll all)."""
        return button_label(self._messages.t, locale, action)

    def progress_text(self, locale: str, event: Progress, running: float) -> str | None:
        """A job's status line: its queue place, or how long the model has worked."""
        return progress_text(self._messages, locale, event.stage, event.position, running)

    async def locale_for(self, actor: Actor) -> str:
        """The actor's language: saved, else the platform's, else the configured default."""
        return await self._service.locale_for(actor)

    def help_text(self, locale: str) -> str:
        """/help: commands, buttons and every inline flag, the style presets named."""
        return self.t(locale, "help.text", styles=", ".join(self.style_names()))

    def style_names(self) -> list[str]:
        """Style presets (``--style NAME``), built-in and configured."""
        return self._service.styles.names()

    def style_label(self, locale: str, name: str) -> str:
        """A preset's name as people see it."""
        return self._service.styles.label(self._messages.t, locale, name)

    def group_text(self, locale: str, group: GroupSettings) -> str:
        """The /config answer: every setting of ``group``, translated."""
        return describe(self.t, locale, group)
