"""What many test files need: a clock the test moves, and small solid-colour test images."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

from PIL import Image

from bot.domain import ImageData

Color = str | tuple[int, int, int] | tuple[int, int, int, int]


class FakeClock:
    """An injected clock that only moves when told to."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move on by ``timedelta(**delta)``."""
        self.now += timedelta(**delta)


def _encoded(fmt: str, width: int, height: int, color: Color, mode: str) -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), color).save(out, fmt)
    return out.getvalue()


def png(width: int = 8, height: int = 8, color: Color = "red", *, mode: str = "RGB") -> bytes:
    """A small solid-colour PNG (the same arguments give the same bytes)."""
    return _encoded("PNG", width, height, color, mode)


def jpeg(width: int = 8, height: int = 8, color: Color = "blue") -> bytes:
    """A small solid-colour JPEG."""
    return _encoded("JPEG", width, height, color, "RGB")


def photo(width: int = 64, height: int = 48, color: Color = (200, 60, 60)) -> bytes:
    """A user's photo: a PNG in a phone photo's proportions."""
    return png(width, height, color)


def png_data(width: int = 8, height: int = 8, color: Color = "red", *,
             mode: str = "RGB") -> ImageData:
    """:func:`png` as the core holds it: MIME type and size known."""
    return ImageData(data=png(width, height, color, mode=mode), mime="image/png", width=width,
                     height=height)
