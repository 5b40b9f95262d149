"""``DemoProvider``: an offline placeholder drawn with Pillow, for trials without any API key.

It draws the prompt, the size and a visible "DEMO" label, and thumbnails of the references in
a strip so edits are visibly different from fresh generations.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import textwrap

from PIL import Image, ImageDraw, ImageFont

from bot.domain import ImageData
from bot.providers.base import ProviderRequest, ProviderResult

_BASE = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}


def dimensions(size: str | None, aspect: str | None) -> tuple[int, int]:
    """Pixel size for a size label and an aspect ratio, as Gemini sizes them (multiples of 16)."""
    base = _BASE.get(size or "1K", 1024)
    try:
        w_part, h_part = (float(p) for p in (aspect or "1:1").split(":"))
        ratio = w_part / h_part
    except ValueError:
        ratio = 1.0
    width = math.sqrt(base * base * ratio)
    height = base * base / width
    return max(16, round(width / 16) * 16), max(16, round(height / 16) * 16)


# Pillow's built-in font has no CJK glyphs; use a system CJK font when one is installed.
_CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)


def _font(px: int, text: str = "") -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    if any(ord(ch) > 0x2E80 for ch in text):
        for path in _CJK_FONTS:
            try:
                return ImageFont.truetype(path, px)
            except OSError:
                continue
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError):
        return ImageFont.load_default()


def render(request: ProviderRequest) -> ImageData:
    """Draw the placeholder (CPU work: call it in a thread)."""
    width, height = dimensions(request.size, request.aspect)
    seed = hashlib.sha256(request.prompt.encode()).digest()
    top, bottom = seed[:3], seed[3:6]
    gradient = Image.linear_gradient("L").resize((width, height))
    canvas = Image.composite(Image.new("RGB", (width, height), tuple(bottom)),
                             Image.new("RGB", (width, height), tuple(top)), gradient)
    draw = ImageDraw.Draw(canvas)
    unit = max(12, min(width, height) // 24)
    draw.text((unit, unit), "DEMO", fill="white", font=_font(unit * 3), stroke_width=max(1, unit // 8),
              stroke_fill="black")
    label = f"{request.model_id} · {request.size or '1K'} · {request.aspect or '1:1'}"
    draw.text((unit, unit * 5), label, fill="white", font=_font(unit), stroke_width=1,
              stroke_fill="black")
    wrapped = textwrap.fill(request.prompt, width=max(16, width // (unit // 2 + 1)))[:600]
    draw.multiline_text((unit, unit * 7), wrapped, fill="white", font=_font(unit, wrapped),
                        stroke_width=1,
                        stroke_fill="black")
    refs = [*request.references, *(o for h in request.history[-1:] for o in h.outputs)]
    thumb_side = max(32, min(width, height) // 5)
    for index, ref in enumerate(refs[:6]):
        with Image.open(io.BytesIO(ref.data)) as src:
            src.draft("RGB", (thumb_side, thumb_side))
            thumb = src.convert("RGB")
            thumb.thumbnail((thumb_side, thumb_side))
        x = unit + index * (thumb_side + unit // 2)
        canvas.paste(thumb, (x, height - thumb_side - unit))
        draw.rectangle((x, height - thumb_side - unit, x + thumb.width, height - unit + thumb.height
                        - thumb_side), outline="white", width=2)
    out = io.BytesIO()
    canvas.save(out, format="PNG", compress_level=1)
    return ImageData(data=out.getvalue(), mime="image/png", width=width, height=height,
                     name="demo.png")


class DemoProvider:
    """Renders labelled placeholders locally; optionally waits ``delay`` seconds first."""

    def __init__(self, name: str = "demo", delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        """Draw one placeholder image off the event loop."""
        if self.delay:
            await asyncio.sleep(self.delay)
        image = await asyncio.to_thread(render, request)
        return ProviderResult(images=(image,), text="DEMO", finish_reason="STOP", shape="demo",
                              demo=True)

    async def aclose(self) -> None:
        """Nothing to release."""
