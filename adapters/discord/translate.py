"""Command names and descriptions from the message catalogs, via discord.py's Translator."""

from __future__ import annotations

from discord import Locale, app_commands

from bot.messages import Messages

#: Discord locales we have catalogs for.
_LOCALES = {Locale.chinese: "zh-Hans", Locale.taiwan_chinese: "zh-Hant"}


def ls(messages: Messages, key: str) -> app_commands.locale_str:
    """A translatable string: English text from the catalog, ``key`` for the other locales."""
    return app_commands.locale_str(messages.t("en", key), key=key)


class CatalogTranslator(app_commands.Translator):
    """Looks up ``locale_str(..., key=...)`` in the zh-Hans / zh-Hant catalogs."""

    def __init__(self, messages: Messages) -> None:
        self._messages = messages
        self._keys = {loc: messages.keys(loc) for loc in _LOCALES.values()}

    async def translate(self, string: app_commands.locale_str, locale: Locale,
                        context: app_commands.TranslationContextTypes) -> str | None:
        """The catalog text, or None to keep the English one."""
        key = string.extras.get("key")
        catalog = _LOCALES.get(locale)
        if not key or catalog is None or key not in self._keys[catalog]:
            return None
        return self._messages.t(catalog, key)
