"""What an image is, and the Pillow work on it: the one place bytes are identified as an image.

Identification (every path: a user's reference, an upstream's answer, a result to deliver): the
type comes from the magic bytes (bot/sniff.py), never a label; the pixel size from the header
before any decoding (bot/image_header.py), so a bomb is refused unopened; Pillow then opens
only the sniffed format. An upstream's answer is also decoded in full and must end where the
image ends (bot/image_end.py). References, fitted results and thumbnails are decoded, resized
and encoded once, in worker threads (bot/image_ops.py).
"""

from __future__ import annotations

import functools
import importlib
import io
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image

from bot import provenance
from bot.domain import Budget, ImageData
from bot.errors import InputTooLarge, UnsupportedImage, UpstreamError
from bot.image_end import FORMATS as END_FORMATS
from bot.image_end import check_trailing
from bot.image_header import header_size
from bot.image_ops import (
    ORIENT,
    canvas_size,
    content_size,
    encode,
    flatten,
    normalize,
    orient,
    resize,
    scaled,
    swap,
    wrap,
)
from bot.offload import run_sync
from bot.sniff import image_mime, what_bytes

__all__ = ["Budget", "fit", "prepare_reference", "probe", "thumbnail", "verify_image"]

#: Largest pixel count we decode; bigger images are refused from their header (bomb guard).
MAX_PIXELS = 50_000_000
#: An upstream's image up to this size is verified on the event loop (well under a millisecond).
INLINE_VERIFY = 256 * 1024


@dataclass(frozen=True, slots=True)
class Kind:
    """An image type we take: Pillow's name for its format and the label used in error texts."""

    pillow: str
    label: str


KINDS: dict[str, Kind] = {
    "image/png": Kind(pillow="PNG", label="PNG"),
    "image/jpeg": Kind(pillow="JPEG", label="JPEG"),
    "image/webp": Kind(pillow="WEBP", label="WebP"),
    "image/gif": Kind(pillow="GIF", label="GIF"),
    "image/heic": Kind(pillow="HEIF", label="HEIC"),
    "image/avif": Kind(pillow="AVIF", label="AVIF"),
}
_T = TypeVar("_T")
_pool: ThreadPoolExecutor | None = None


async def _run(fn: Callable[..., _T], *args: object) -> _T:
    """Run CPU-bound Pillow work on a pool sized to the cores (bounds CPU and memory).

    A cancel waits for the work to end (bot/offload.py): a delivery that gives up must not
    release its lease while a thread still holds the decoded image.
    """
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="images")
    return await run_sync(fn, *args, executor=_pool)


def _sniff(data: bytes) -> tuple[str | None, str]:
    """(accepted MIME or None, what the bytes are) from magic bytes alone."""
    mime = image_mime(data)  # the one magic-number table for accepted types (ImageData uses it)
    return (mime, f"{KINDS[mime].label} image") if mime is not None else (None, what_bytes(data))


def _check_pixels(size: tuple[int, int], label: str) -> None:
    """Refuse images whose pixel count is over :data:`MAX_PIXELS` (or zero)."""
    w, h = size
    if w <= 0 or h <= 0:
        raise UnsupportedImage(f"damaged {label}")
    if w * h > MAX_PIXELS:
        raise UnsupportedImage(f"{w}x{h} {label}, over the {MAX_PIXELS // 1_000_000} MP limit")


def _identify(data: bytes, limit: bool = True) -> tuple[str, str, tuple[int, int] | None]:
    """(MIME, short label, header size or None) of an accepted image; UnsupportedImage otherwise."""
    mime, what = _sniff(data)
    if mime is None:
        raise UnsupportedImage(what)
    label = KINDS[mime].label
    size = header_size(mime, data)
    if size is None and mime not in ("image/heic", "image/avif"):
        raise UnsupportedImage(f"truncated {label}")
    if size is not None and limit:
        _check_pixels(size, label)
    return mime, label, size


@contextmanager
def _decoding(label: str) -> Iterator[None]:
    """Turn Pillow's decode failures into UnsupportedImage naming what was received."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UnsupportedImage(f"{label} over the {MAX_PIXELS // 1_000_000} MP limit") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error) as e:
        raise UnsupportedImage(("truncated " if "truncat" in str(e) else "damaged ") + label) from e


_Sizer = Callable[[int, int], tuple[int, int]]
_RESIZABLE = ("L", "LA", "RGB", "RGBA", "CMYK", "I", "I;16", "F")


def _decode(data: bytes, mime: str, label: str, sizer: _Sizer) -> tuple[Image.Image, int]:
    """Decode once (JPEG draft-scaled), resize once to ``sizer(w, h)``, normalise; + orientation."""
    if mime == "image/heic" and not _heif_ready():
        raise UnsupportedImage("HEIC image (HEIC support is not installed)")
    with _decoding(label):
        src = Image.open(io.BytesIO(data), formats=(KINDS[mime].pillow,))
        try:
            _check_pixels(src.size, label)
            size = sizer(*src.size)
            if src.format == "JPEG" and size != src.size:
                src.draft(None, size)
            src.load()
            orientation = src.getexif().get(0x0112, 1)
        except BaseException:
            src.close()
            raise
    icc = src.info.get("icc_profile")
    icc = icc if isinstance(icc, bytes) else None
    im = (normalize(resize(src, size), icc) if src.mode in _RESIZABLE
          else resize(normalize(src, icc), size))
    return im, orientation if orientation in ORIENT else 1


@functools.cache
def _heif_ready() -> bool:
    """Register pillow-heif's opener if the optional extra is installed."""
    try:
        importlib.import_module("pillow_heif").register_heif_opener()
    except ImportError:
        return False
    return True


def _prepare_sync(data: bytes, mime: str, label: str, max_out: int, side: int,
                  name: str) -> ImageData:
    """Decode, downscale, normalise, orient and re-encode one reference."""
    im, orientation = _decode(data, mime, label, lambda w, h: scaled(w, h, Budget(0, side)))
    im = orient(im, orientation)
    fmt = "PNG" if im.mode in ("RGBA", "LA") else "JPEG"
    return wrap(*encode(im, fmt, max_out), fmt, name)


async def prepare_reference(data: bytes, *, max_input_bytes: int = 20_000_000,
                            max_output_bytes: int = 5_000_000, max_side: int = 2048,
                            name: str = "") -> ImageData:
    """Validate and clean a user's reference image: oriented, metadata-free, small enough."""
    if len(data) > max_input_bytes:
        raise InputTooLarge(len(data) / 1e6, max_input_bytes / 1e6)
    mime, label, _ = _identify(data)
    return await _run(_prepare_sync, data, mime, label, max_output_bytes, max_side, name)


def _fits(mime: str, size: int, dims: tuple[int, int] | None, budget: Budget) -> bool:
    """Whether an encoded image already satisfies every limit of the budget."""
    if dims is None or mime not in budget.formats or size > budget.max_bytes:
        return False
    w, h = dims
    return (scaled(w, h, budget) == (w, h) and
            (budget.max_ratio is None or max(w, h) / min(w, h) <= budget.max_ratio))


def _fit_sync(image: ImageData, mime: str, label: str, budget: Budget) -> ImageData:
    """Decode once, resize once, pad to the ratio limit, orient, encode JPEG within budget."""
    im, orientation = _decode(image.data, mime, label, lambda w, h: content_size(w, h, budget))
    im = flatten(im)
    cw, ch = canvas_size(im.width, im.height, budget)
    if (cw, ch) != im.size:
        canvas = Image.new(im.mode, (cw, ch), 255 if im.mode == "L" else (255, 255, 255))
        canvas.paste(im, ((cw - im.width) // 2, (ch - im.height) // 2))
        im = swap(im, canvas)
    im = orient(im, orientation)
    marks = provenance.segments(image.data, mime)  # the original's provenance, or the AI marker
    if len(marks) > budget.max_bytes // 4:  # a tiny budget: the marker alone, or nothing
        marks = provenance.segments(b"", "")
        marks = marks if len(marks) <= budget.max_bytes // 4 else b""
    data, im = encode(im, "JPEG", budget.max_bytes - len(marks))
    return wrap(provenance.stamp(data, marks), im, "JPEG", image.name)


def _decode_size(data: bytes, mime: str) -> tuple[int, int]:
    """Size from Pillow's lazy open (header only), for HEIC/AVIF files without an ispe box."""
    if mime == "image/heic" and not _heif_ready():
        raise UnsupportedImage("HEIC image (HEIC support is not installed)")
    with _decoding(KINDS[mime].label), Image.open(io.BytesIO(data),
                                                formats=(KINDS[mime].pillow,)) as im:
        return im.size


async def fit(image: ImageData, budget: Budget) -> ImageData:
    """Return ``image`` itself when it fits ``budget``, else one JPEG re-encode that does."""
    mime, label, dims = _identify(image.data)
    if _fits(mime, len(image.data), dims, budget):
        return image  # its MIME type was sniffed from these bytes when it was made
    return await _run(_fit_sync, image, mime, label, budget)


def _thumb_sync(data: bytes, mime: str, label: str, side: int, name: str) -> ImageData:
    """Decode (draft-scaled), shrink to ``side``, flatten, orient; JPEG quality 85."""
    im, orientation = _decode(data, mime, label, lambda w, h: scaled(w, h, Budget(0, side)))
    im = orient(flatten(im), orientation)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return wrap(provenance.stamp(buf.getvalue(), provenance.segments(data, mime)), im, "JPEG",
                   name)


async def thumbnail(image: ImageData, side: int = 320) -> ImageData:
    """A JPEG preview whose long side is at most ``side`` pixels."""
    mime, label, _ = _identify(image.data)
    return await _run(_thumb_sync, image.data, mime, label, side, image.name)


async def probe(data: bytes) -> tuple[str, int, int]:
    """(MIME, width, height) from the header only; UnsupportedImage if not an image."""
    mime, _, size = _identify(data, limit=False)
    if size is None:
        size = await _run(_decode_size, data, mime)
    return mime, size[0], size[1]


async def verify_image(data: bytes) -> ImageData:
    """An upstream's image checked whole: one PNG, JPEG, WebP or GIF and nothing after it.

    Identified as every image is here, then decoded in full (a PNG walks every chunk and its
    CRC) to catch truncation; the bytes kept are exactly the verified image (a few bytes of
    trailing slack are trimmed, more are refused: bot/image_end.py). UpstreamError otherwise.
    A large one is checked in the loop's pool, as the rest of its answer is parsed
    (bot/offload.py); its pixel count is bounded by Pillow's own bomb guard, as it always was.
    """
    mime, width, height, data = (await run_sync(_verify_sync, data)
                                 if len(data) > INLINE_VERIFY else _verify_sync(data))
    return ImageData(data=data, mime=mime, width=width, height=height)


def _verify_sync(data: bytes) -> tuple[str, int, int, bytes]:
    """(MIME, width, height, the image's own bytes) of an upstream's image; UpstreamError if not."""
    mime, what = _sniff(data)
    kind = KINDS.get(mime or "")
    if mime is None or kind is None or kind.pillow not in END_FORMATS:
        raise UpstreamError(f"unexpected image format from upstream ({what})")
    try:
        with Image.open(io.BytesIO(data), formats=(kind.pillow,)) as im:
            width, height = im.size
            if kind.pillow == "PNG":
                im.verify()  # walks every chunk and its CRC: catches truncation cheaply
            else:
                im.load()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, struct.error, ...
        raise UpstreamError(
            f"image data does not decode ({type(exc).__name__}; truncated?)") from None
    end = check_trailing(data, kind.pillow)
    return mime, width, height, data if end == len(data) else data[:end]
