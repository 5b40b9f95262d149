"""Keeps secrets out of anything a user or a log reader sees, even when an upstream echoes them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from bot.config import Settings

MASK = "***"
_HINTS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
_MIN_LEN = 8  # shorter values would mask ordinary words


def secret_names(settings: Settings) -> set[str]:
    """Env var names the configuration reads secrets from."""
    names = {"IMAGE_API_KEY", settings.telegram.token_env, settings.discord.token_env,
             settings.web.token_env}
    names |= {p.key_env for p in settings.provider_table().values() if p.key_env}
    return names


def secret_values(names: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the named env vars and of any env var that looks like a secret, longest first."""
    env = os.environ if environ is None else environ
    wanted = set(names)
    values = {v for k, v in env.items()
              if (k in wanted or any(h in k.upper() for h in _HINTS)) and len(v) >= _MIN_LEN}
    return sorted(values, key=len, reverse=True)


class Redactor:
    """Replaces every known secret in a text with ``***``."""

    def __init__(self, values: Iterable[str]) -> None:
        self._values = sorted({v for v in values if len(v) >= _MIN_LEN}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """``text`` with secrets masked.

        Every occurrence of every secret is found in the original text first, then overlapping
        spans are merged: replacing one secret at a time would cut a secret that contains or
        overlaps another and leave its remainder readable.
        """
        spans: list[tuple[int, int]] = []
        for value in self._values:
            at = text.find(value)
            while at != -1:
                spans.append((at, at + len(value)))
                at = text.find(value, at + 1)
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        done = 0
        start, end = spans[0]
        for s, e in spans[1:]:
            if s < end:
                end = max(end, e)
                continue
            out += [text[done:start], MASK]
            done, start, end = end, s, e
        out += [text[done:start], MASK, text[end:]]
        return "".join(out)
