"""``DemoProvider``: an offline placeholder drawn with Pillow, for trials without any API key.

It draws the prompt, the size and a visible "DEMO" label, and thumbnails of the references in
a strip so edits are visibly different from fresh generations.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math

from PIL import Image, ImageDraw

from bot.domain import ImageData
from bot.providers import demo_fonts as fonts
from bot.providers.base import ProviderRequest, ProviderResult
from bot.providers.text import TextRequest, demo_text

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
    draw.text((unit, unit), "DEMO", fill="white", font=fonts.pick(unit * 3, frozenset("DEMO")),
              stroke_width=max(1, unit // 8), stroke_fill="black")
    label = f"{request.model_id} · {request.size or '1K'} · {request.aspect or '1:1'}"
    draw.text((unit, unit * 5), label, fill="white", font=fonts.pick(unit, frozenset(label)),
              stroke_width=1, stroke_fill="black")
    prompt = request.prompt[:600]
    font = fonts.pick(unit, frozenset(prompt))
    prompt, dropped = fonts.drawable(font, prompt)  # no boxes for characters it lacks
    if dropped:
        prompt = f"{prompt}\n(no font on this server for some of the prompt's characters)"
    lines = max(1, (height - unit * 8 - min(width, height) // 5) // int(unit * 1.25))
    wrapped = fonts.wrap(prompt, font, width - 2 * unit, lines)
    draw.multiline_text((unit, unit * 7), wrapped, fill="white", font=font, stroke_width=1,
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

    async def text(self, request: TextRequest) -> str:
        """Text mode (/describe) offline: prompts from the image's shape."""
        if self.delay:
            await asyncio.sleep(self.delay)
        return demo_text(request.image)

    async def aclose(self) -> None:
        """Nothing to release."""
