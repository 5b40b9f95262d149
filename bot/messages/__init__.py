"""User-facing text catalogs (en, zh-Hans, zh-Hant), one TOML file per area in each locale folder.

Keys are dotted (``error.quota``); values are ``str.format`` templates with named fields.
Every locale must hold exactly the same keys (a test enforces it).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Any

LOCALES: tuple[str, ...] = ("en", "zh-Hans", "zh-Hant")
DEFAULT_LOCALE = "en"


def _flatten(prefix: str, node: Mapping[str, Any], out: dict[str, str]) -> None:
    for key, value in node.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            _flatten(full, value, out)
        else:
            out[full] = str(value)


def load_catalog(locale: str) -> dict[str, str]:
    """Every key of ``locale`` merged from all its area files."""
    out: dict[str, str] = {}
    folder = resources.files(__package__).joinpath(locale)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            _flatten("", tomllib.loads(entry.read_text("utf-8")), out)
    return out


def normalize_locale(raw: str | None) -> str | None:
    """Map platform locale codes (``zh-CN``, ``zh_TW``, ``en-US``, ``zh-hans``) to a catalog locale."""
    if not raw:
        return None
    code = raw.replace("_", "-").lower()
    if code in ("zh-tw", "zh-hk", "zh-mo", "zh-hant") or code.startswith("zh-hant"):
        return "zh-Hant"
    if code.startswith("zh"):
        return "zh-Hans"
    if code.startswith("en"):
        return "en"
    return None


class Messages:
    """Translator: ``messages.t(locale, key, **params)``; falls back to English, then the key."""

    def __init__(self) -> None:
        self._catalogs = {loc: load_catalog(loc) for loc in LOCALES}

    def t(self, locale: str | None, key: str, /, **params: Any) -> str:
        """The text for ``key`` in ``locale`` with ``params`` filled in."""
        loc = locale if locale in self._catalogs else DEFAULT_LOCALE
        template = self._catalogs[loc].get(key) or self._catalogs[DEFAULT_LOCALE].get(key)
        if template is None:
            return key
        try:
            return template.format(**params)
        except (KeyError, IndexError, ValueError):
            return template

    def keys(self, locale: str) -> set[str]:
        """Every key the ``locale`` catalog defines."""
        return set(self._catalogs[locale])
