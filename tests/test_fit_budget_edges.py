"""Fitting at the byte budget's edge: every output kind, every format, just over and 1.5x over.

The bytes are padded with chunks every decoder skips (a private PNG chunk, JPEG comments, an
unknown RIFF chunk in an extended WebP, a GIF comment extension), so a 64x48 picture can weigh
exactly what a test needs without encoding megapixels.
"""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from adapters.discord.deliver import DEFAULT_UPLOAD_LIMIT, capabilities
from adapters.telegram.deliver import DOCUMENT_BUDGET, PHOTO_BUDGET
from bot import images
from bot.delivery import fit_all
from bot.domain import ImageData, Reply
from bot.images import Budget, fit

FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
#: The real adapters' budgets: Telegram photo, Telegram document.
TELEGRAM = {"telegram-photo": PHOTO_BUDGET, "telegram-document": DOCUMENT_BUDGET}
#: Discord guild upload limits: the default and a boosted one.
DISCORD = {"discord-default": DEFAULT_UPLOAD_LIMIT, "discord-boosted": 50 * 1024 * 1024}


def _small(fmt: str) -> bytes:
    """A 64x48 picture in ``fmt`` (WebP in the extended layout, which allows extra chunks)."""
    im = Image.new("RGB", (64, 48), (200, 60, 60))
    buf = io.BytesIO()
    if fmt == "WEBP":
        exif = im.getexif()
        exif[0x010E] = "padded"
        im.save(buf, fmt, exif=exif)
    else:
        im.save(buf, fmt)
    return buf.getvalue()


def padded(fmt: str, size: int) -> bytes:
    """A valid ``fmt`` image of exactly ``size`` bytes (WebP: ``size`` rounded up to even)."""
    data = _small(fmt)
    need = size - len(data)
    assert need > 16
    if fmt == "PNG":  # a private ancillary chunk after IHDR: decoders skip it
        body = bytes(need - 12)
        chunk = struct.pack(">I", len(body)) + b"prVt" + body + struct.pack(
            ">I", zlib.crc32(b"prVt" + body))
        out = data[:33] + chunk + data[33:]
    elif fmt == "JPEG":  # COM segments right after SOI, 65,533 bytes of payload at most each
        segments = []
        while need > 0:
            n = min(65_533, need - 4)
            if 0 < need - (n + 4) < 4:  # never leave a remainder too small for a segment
                n -= 4
            segments.append(b"\xff\xfe" + struct.pack(">H", n + 2) + bytes(n))
            need -= n + 4
        out = data[:2] + b"".join(segments) + data[2:]
    elif fmt == "WEBP":  # an unknown chunk in an extended (VP8X) file; RIFF chunks are even
        n = need - 8 + need % 2
        body = data[12:] + b"ZZZZ" + struct.pack("<I", n) + bytes(n + n % 2)
        out = b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body
    else:  # GIF: one comment extension of 255-byte sub-blocks, inserted before the image
        need -= 3  # introducer, label, terminator
        blocks = []
        while need > 0:
            n = min(255, need - 1)
            if 0 < need - (n + 1) < 2:
                n -= 1
            blocks.append(bytes([n]) + bytes(n))
            need -= n + 1
        at = data.index(b"\x2c")  # the first image descriptor
        out = data[:at] + b"\x21\xfe" + b"".join(blocks) + b"\x00" + data[at:]
    assert len(out) in (size, size + 1), (fmt, len(out), size)
    return out


def _sizes(limit: int) -> list[int]:
    """Just over the limit, just over 5 % over, and 1.5x."""
    return [limit + 1, limit + limit // 20 + 1, limit * 3 // 2]


def test_padded_images_decode() -> None:
    """The padding is invisible to Pillow: every padded file opens as the 64x48 picture."""
    for fmt in FORMATS:
        data = padded(fmt, 200_001)
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert im.size == (64, 48) and im.format == fmt


@pytest.mark.parametrize("kind", sorted(TELEGRAM))
@pytest.mark.parametrize("fmt", FORMATS)
async def test_telegram_output_over_budget_is_refitted(kind: str, fmt: str) -> None:
    """An image between 1x and 2x the Telegram budget is re-encoded to fit, never passed on."""
    budget = TELEGRAM[kind]
    for size in _sizes(budget.max_bytes):
        image = ImageData(padded(fmt, size), f"image/{fmt.lower()}", name="r.bin")
        out = await fit(image, budget)
        assert out is not image and out.size_bytes <= budget.max_bytes, (kind, fmt, size)
        assert out.mime in budget.formats and (out.width, out.height) == (64, 48)


@pytest.mark.parametrize("kind", sorted(DISCORD))
@pytest.mark.parametrize("fmt", FORMATS)
async def test_discord_output_over_budget_is_refitted(kind: str, fmt: str) -> None:
    """The Discord adapter's own fitting brings 1x-2x images under the guild upload limit."""
    limit = DISCORD[kind]
    for size in _sizes(limit):
        image = ImageData(padded(fmt, size), f"image/{fmt.lower()}", name="r.bin")
        [item] = await fit_all(Reply("", images=(image,)), capabilities(limit))
        out = item.photo
        assert out is not image and out.size_bytes <= limit, (kind, fmt, size)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF"])
async def test_output_exactly_at_budget_passes_untouched(fmt: str) -> None:
    """The limit itself is allowed: an image of exactly ``max_bytes`` is sent byte for byte."""
    limit = 3_000_000
    budget = Budget(max_bytes=limit, formats=("image/png", "image/jpeg", "image/gif"))
    image = ImageData(padded(fmt, limit), f"image/{fmt.lower()}")
    assert await fit(image, budget) is image


def test_fits_byte_rule_directly() -> None:
    """``_fits`` itself: at the limit yes, one byte over no, for every format it accepts."""
    budget = Budget(max_bytes=1000)
    for mime in budget.formats:
        assert images._fits(mime, 1000, (10, 10), budget)
        assert not images._fits(mime, 1001, (10, 10), budget)
        assert not images._fits(mime, 1500, (10, 10), budget)


@pytest.mark.parametrize("size", [(2100, 100), (100, 2100), (2560, 120)])
async def test_small_image_over_the_ratio_limit_is_padded(size: tuple[int, int]) -> None:
    """Small in bytes and pixels but wider than 20:1: never passed on as it is (Telegram
    refuses such a photo), padded to the ratio limit instead."""
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, "PNG")
    image = ImageData(buf.getvalue(), "image/png")
    assert image.size_bytes < PHOTO_BUDGET.max_bytes // 100
    out = await fit(image, PHOTO_BUDGET)
    assert out is not image
    assert max(out.width, out.height) / min(out.width, out.height) <= PHOTO_BUDGET.max_ratio


async def test_image_at_the_ratio_limit_passes_untouched() -> None:
    """Exactly 20:1 is allowed."""
    buf = io.BytesIO()
    Image.new("RGB", (2000, 100), (10, 120, 200)).save(buf, "PNG")
    image = ImageData(buf.getvalue(), "image/png")
    assert await fit(image, PHOTO_BUDGET) is image
