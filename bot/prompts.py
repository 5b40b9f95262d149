"""Inline prompt flags, one parser for every adapter: ``--ar 16:9``, ``--size 4K``, ``--model NAME``,
``--thinking high``, ``--search`` (a switch: ``--search off`` turns it off), ``--n 1..4``,
``--style NAME``, ``--vary subtle|strong`` and ``--no a, b`` (everything up to the next flag)."""

from __future__ import annotations

import re

from bot.catalog import normalize_size
from bot.domain import Options
from bot.errors import InvalidOption, MissingValue, UnknownFlag

_FLAG = re.compile(r"(?:(?<=\s)|^)(--?[A-Za-z][\w-]*|—[A-Za-z][\w-]*)(?:[ =]+([^\s-][^\s]*))?")
_ALIASES = {"ar": "aspect", "aspect": "aspect", "size": "size", "model": "model", "m": "model",
            "thinking": "thinking", "think": "thinking", "search": "search", "n": "n",
            "style": "style", "no": "no", "vary": "vary"}
#: ``--n``: Midjourney's batch of four is the most people ask for at once.
MAX_N = 4
VARY = ("subtle", "strong")
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
        if name == "no":  # a list: it runs to the next flag (or the end)
            following = _FLAG.search(text, match.end(1))
            stop = following.start() if following else len(text)
            kept.append(text[last:match.start()])
            last = stop
            found["no"] = text[match.end(1):stop]
            continue
        if value is None:
            raise MissingValue(match.group(1))
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
        n=_count(found["n"]) if "n" in found else None,
        style=found["style"].lower() if "style" in found else None,
        negative=_listed(found.get("no", "")),
        vary=_vary(found["vary"]) if "vary" in found else None,
    )


def _count(raw: str) -> int:
    """``--n``: a whole number from 1 to MAX_N."""
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_N:
        raise InvalidOption("--n", raw, [str(i) for i in range(1, MAX_N + 1)])
    return int(raw)


def _vary(raw: str) -> str:
    if raw.lower() not in VARY:
        raise InvalidOption("--vary", raw, list(VARY))
    return raw.lower()


def _listed(raw: str) -> tuple[str, ...]:
    """``--no a, b; c``: the items, trimmed, empty ones dropped."""
    parts = re.split(r"[,;，；]", raw)
    return tuple(p for p in (" ".join(part.split()) for part in parts) if p)
