"""Inline prompt flags shared by every adapter: ``--ar 16:9``, ``--size 4K``, ``--model NAME``,
``--thinking high`` and ``--search`` (a switch: ``--search off`` turns it off)."""

from __future__ import annotations

import re

from bot.catalog import normalize_size
from bot.domain import Options
from bot.errors import UnknownFlag

_FLAG = re.compile(r"(?:(?<=\s)|^)(--?[A-Za-z][\w-]*|—[A-Za-z][\w-]*)(?:[ =]+([^\s-][^\s]*))?")
_ALIASES = {"ar": "aspect", "aspect": "aspect", "size": "size", "model": "model", "m": "model",
            "thinking": "thinking", "think": "thinking", "search": "search"}
_SWITCHES = {"search"}
_SWITCH_WORDS = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}


def parse_flags(text: str) -> tuple[str, Options]:
    """Split ``text`` into the prompt without flags and the Options the flags set.

    Telegram clients often turn ``--`` into an em dash, so ``—ar`` is read as ``--ar``.
    """
    found: dict[str, str] = {}
    kept: list[str] = []
    last = 0
    for match in _FLAG.finditer(text):
        name = match.group(1).lstrip("-—").lower()
        if name not in _ALIASES:
            raise UnknownFlag(match.group(1))
        value = match.group(2)
        if name in _SWITCHES and (value is None or value.lower() not in _SWITCH_WORDS):
            # "--search a cat": the word after a switch belongs to the prompt.
            kept.append(text[last:match.start()])
            last = match.start(2) if value is not None else match.end()
            found[_ALIASES[name]] = "on"
            continue
        if value is None:
            raise UnknownFlag(match.group(1))
        value = value.rstrip(",.;，。；")  # "--ar 16:9, a cat" keeps its comma out of the value
        kept.append(text[last:match.start()])
        last = match.end()
        found[_ALIASES[name]] = value
    kept.append(text[last:])
    prompt = re.sub(r"\s+", " ", "".join(kept)).strip()
    size = found.get("size")
    search = found.get("search")
    return prompt, Options(
        model=found.get("model"),
        size=normalize_size(size) if size else None,
        aspect=found.get("aspect"),
        search=None if search is None else _SWITCH_WORDS.get(search.lower(), True),
        thinking=found["thinking"].lower() if "thinking" in found else None,
    )
