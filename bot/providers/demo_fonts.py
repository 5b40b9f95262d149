"""Fonts for the demo's placeholders: one that draws every character of the prompt when the
system has it (Pillow's own font has no CJK glyphs), else a clean fallback that says so.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from pathlib import Path

from PIL import ImageFont

log = logging.getLogger(__name__)
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont
#: Known CJK fonts of Debian/Ubuntu (fonts-noto-cjk, fonts-wqy-*, fonts-droid-fallback),
#: macOS and Windows, tried in order; the Dockerfile installs fonts-wqy-microhei.
CANDIDATES: tuple[str, ...] = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)
#: A code point no font draws: its mask is the font's "missing glyph" box.
_NEVER = "\U0010fffd"


def _default(px: int) -> Font:
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


@functools.cache
def _missing_mask(font: Font) -> tuple[tuple[int, int, int, int] | None, bytes]:
    mask = font.getmask(_NEVER)
    return mask.getbbox(), bytes(mask)


def covers(font: Font, text: str) -> bool:
    """True when ``font`` has a glyph for every visible character of ``text``."""
    if not isinstance(font, ImageFont.FreeTypeFont):
        return all(ch.isspace() or ord(ch) < 0x100 for ch in text)
    missing = _missing_mask(font)
    for ch in set(text):
        if ch.isspace() or ord(ch) < 0x80:
            continue  # every font here draws ASCII
        mask = font.getmask(ch)
        if (mask.getbbox(), bytes(mask)) == missing:
            return False
    return True


@functools.cache
def _installed(candidates: tuple[str, ...]) -> tuple[str, ...]:
    found = tuple(p for p in candidates if Path(p).is_file())
    if not found:
        log.warning("demo images: no CJK font found (tried %s); Chinese prompts are left out "
                    "of the placeholder. Install fonts-wqy-microhei or fonts-noto-cjk",
                    ", ".join(candidates))
    return found


def pick(px: int, needs: frozenset[str]) -> Font:
    """A font of ``px`` pixels that draws the characters ``needs``, if one is installed."""
    return _pick(px, needs, CANDIDATES)


@functools.cache
def _pick(px: int, needs: frozenset[str], candidates: tuple[str, ...]) -> Font:
    base = _default(px)
    text = "".join(sorted(needs))
    if covers(base, text):
        return base
    for path in _installed(candidates):
        try:
            font = ImageFont.truetype(path, px)
        except OSError:
            continue
        if covers(font, text):
            return font
    return base


def drawable(font: Font, text: str) -> tuple[str, bool]:
    """``text`` without the characters ``font`` cannot draw, and whether any were dropped."""
    if covers(font, text):
        return text, False
    kept = "".join(ch for ch in text if covers(font, ch))
    return " ".join(kept.split()), True


def wrap(text: str, font: Font, max_px: float, lines: int) -> str:
    """Lines at most ``max_px`` wide, broken at spaces, or anywhere in scripts without them."""
    out: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for token in _tokens(paragraph):
            if line and font.getlength(line + token) > max_px:
                out.append(line.rstrip())
                line = token.lstrip()
            else:
                line += token
        out.append(line.rstrip())
    if len(out) > lines:
        out = [*out[: lines - 1], out[lines - 1].rstrip() + "…"]
    return "\n".join(out)


def _tokens(text: str) -> Iterable[str]:
    """Words with their trailing space; each CJK character is a word of its own."""
    word = ""
    for ch in text:
        if ord(ch) >= 0x2E80:  # CJK and later blocks: a line may break after any character
            if word:
                yield word
                word = ""
            yield ch
        elif ch == " ":
            yield word + " "
            word = ""
        else:
            word += ch
    if word:
        yield word
