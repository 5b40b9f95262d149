"""Pillow work for references, output fitting and thumbnails; all decoding runs off the loop."""

from __future__ import annotations

import functools
import importlib
import io
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from PIL import Image, ImageCms

from bot import provenance
from bot.domain import Budget, ImageData
from bot.errors import InputTooLarge, UnsupportedImage
from bot.image_header import header_size
from bot.offload import run_sync
from bot.sniff import image_mime

__all__ = ["Budget", "fit", "prepare_reference", "probe", "thumbnail"]

#: Largest pixel count we decode; bigger images are refused from their header (bomb guard).
MAX_PIXELS = 50_000_000
#: Accepted MIME types -> (Pillow format, short label used in error texts).
_KINDS = {"image/png": ("PNG", "PNG"), "image/jpeg": ("JPEG", "JPEG"),
          "image/webp": ("WEBP", "WebP"), "image/gif": ("GIF", "GIF"),
          "image/heic": ("HEIF", "HEIC"), "image/avif": ("AVIF", "AVIF")}
_MAGIC = ((b"%PDF", "PDF document"), (b"PK\x03\x04", "ZIP archive"), (b"Rar!", "RAR archive"),
          (b"7z\xbc\xaf", "7z archive"), (b"\x1f\x8b", "gzip archive"), (b"II*\x00", "TIFF image"),
          (b"MM\x00*", "TIFF image"), (b"\x1aE\xdf\xa3", "WebM video"), (b"OggS", "Ogg media"),
          (b"ID3", "MP3 audio"), (b"fLaC", "FLAC audio"), (b"8BPS", "Photoshop document"),
          (b"\x00\x00\x01\x00", "ICO icon"), (b"\xff\x0a", "JPEG XL image"),
          (b"\x00\x00\x00\x0cJXL ", "JPEG XL image"), (b"\x7fELF", "program"))
_ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
           4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
           6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}
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
    if not data:
        return None, "empty file"
    mime = image_mime(data)  # the one magic-number table for accepted types (ImageData uses it)
    if mime is not None:
        return mime, f"{_KINDS[mime][1]} image"
    if data.startswith(b"RIFF"):
        return None, {b"AVI ": "AVI video", b"WAVE": "WAV audio"}.get(data[8:12], "RIFF file")
    if data[4:8] == b"ftyp":
        return None, {b"qt  ": "QuickTime video", b"M4A ": "M4A audio"}.get(data[8:12], "MP4 video")
    if data.startswith(b"BM") and data[6:10] == b"\0\0\0\0":
        return None, "BMP image"
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return None, what
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in head:
        return None, "SVG image"
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return None, "HTML page"
    text = head.decode("utf-8", "replace")
    junk = sum(1 for c in text if c == "\ufffd" or (c < " " and c not in "\t\r\n\f"))
    if junk <= 3 + len(text) // 100:
        return None, "XML document" if head.startswith(b"<?xml") else "text"
    return None, "unknown file"


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
    label = _KINDS[mime][1]
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
        src = Image.open(io.BytesIO(data), formats=(_KINDS[mime][0],))
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
    if src.mode in _RESIZABLE:
        im = _normalize(_resize(src, size), icc)
    else:
        im = _resize(_normalize(src, icc), size)
    return im, orientation if orientation in _ORIENT else 1


@functools.cache
def _heif_ready() -> bool:
    """Register pillow-heif's opener if the optional extra is installed."""
    try:
        importlib.import_module("pillow_heif").register_heif_opener()
    except ImportError:
        return False
    return True


@functools.cache
def _srgb() -> ImageCms.ImageCmsProfile:
    """The sRGB profile every output is converted to."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _normalize(im: Image.Image, icc: bytes | None) -> Image.Image:
    """8-bit L, LA, RGB or RGBA in sRGB without metadata (EXIF, ICC, text); closes ``im``."""
    mode = im.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        out = im.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    elif mode in ("P", "PA"):
        out = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode in ("L", "LA", "RGB", "RGBA"):
        out = im
    else:
        out = im.convert({"1": "L", "La": "LA", "RGBa": "RGBA", "LA": "LA"}.get(mode, "RGB"))
    if icc and mode in ("RGB", "RGBA", "CMYK"):
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            space = "CMYK" if mode == "CMYK" else "RGB"
            if (profile.profile.xcolor_space.strip() == space
                    and "sRGB" not in ImageCms.getProfileDescription(profile)):
                conv = ImageCms.profileToProfile(im, profile, _srgb(), outputMode=out.mode)
                out = conv or out
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    if out is not im:
        im.close()
    if out.mode in ("RGBA", "LA") and out.getchannel("A").getextrema() == (255, 255):
        out = _swap(out, out.convert(out.mode[:-1]))
    out.info = {}
    return out


def _swap(old: Image.Image, new: Image.Image) -> Image.Image:
    """Return ``new`` after releasing ``old``'s pixels."""
    if new is not old:
        old.close()
    return new


def _scaled(w: int, h: int, budget: Budget) -> tuple[int, int]:
    """Largest size with the same aspect ratio within the budget's side, pixel and w+h limits."""
    k = 1.0
    if budget.max_side:
        k = min(k, budget.max_side / max(w, h))
    if budget.max_pixels:
        k = min(k, math.sqrt(budget.max_pixels / (w * h)))
    if budget.max_sum_wh:
        k = min(k, budget.max_sum_wh / (w + h))
    return (w, h) if k >= 1.0 else (max(1, int(w * k)), max(1, int(h * k)))


def _resize(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize once, releasing the larger copy.

    BICUBIC (antialiased when downscaling) costs ~0.7x LANCZOS for no visible loss at these
    ratios; ``reducing_gap`` box-reduces first by whole factors when shrinking 4x or more.
    """
    if im.size == size:
        return im
    return _swap(im, im.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0))


def _orient(im: Image.Image, orientation: int) -> Image.Image:
    """Apply the EXIF orientation (done last, on the smallest copy)."""
    return im if orientation == 1 else _swap(im, im.transpose(_ORIENT[orientation]))


def _encode(im: Image.Image, fmt: str, max_bytes: int) -> tuple[bytes, Image.Image]:
    """Encode under ``max_bytes``: JPEG quality 90 down to 75, then smaller sizes."""
    qualities: tuple[int, ...] = (90, 85, 80, 75) if fmt == "JPEG" else (3,)
    while True:
        for q in qualities:
            buf = io.BytesIO()
            if fmt == "JPEG":
                im.save(buf, "JPEG", quality=q)
            else:
                im.save(buf, "PNG", compress_level=q)
            if buf.tell() <= max_bytes:
                return buf.getvalue(), im
            if buf.tell() > 3 * max_bytes:
                break
        if max(im.size) <= 16:
            raise InputTooLarge(buf.tell() / 1e6, max_bytes / 1e6)
        k = min(0.9, max(0.3, math.sqrt(max_bytes / buf.tell()) * 0.95))
        im = _resize(im, (max(1, int(im.width * k)), max(1, int(im.height * k))))
        qualities = qualities[-2:]


def _result(data: bytes, im: Image.Image, fmt: str, name: str) -> ImageData:
    """Wrap encoded bytes, renaming ``name`` to the new extension; closes ``im``."""
    ext = "jpg" if fmt == "JPEG" else "png"
    stem = name.rsplit(".", 1)[0] if "." in name else name
    out = ImageData(data, f"image/{'jpeg' if fmt == 'JPEG' else 'png'}", im.width, im.height,
                    f"{stem}.{ext}" if stem else "")
    im.close()
    return out


def _flatten(im: Image.Image) -> Image.Image:
    """Composite alpha onto white for JPEG, releasing the input."""
    if im.mode not in ("RGBA", "LA"):
        return im
    out = Image.new(im.mode[:-1], im.size, 255 if im.mode == "LA" else (255, 255, 255))
    out.paste(im, mask=im.getchannel("A"))
    return _swap(im, out)


def _prepare_sync(data: bytes, mime: str, label: str, max_out: int, side: int,
                  name: str) -> ImageData:
    """Decode, downscale, normalise, orient and re-encode one reference."""
    im, orientation = _decode(data, mime, label, lambda w, h: _scaled(w, h, Budget(0, side)))
    im = _orient(im, orientation)
    fmt = "PNG" if im.mode in ("RGBA", "LA") else "JPEG"
    return _result(*_encode(im, fmt, max_out), fmt, name)


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
    return (_scaled(w, h, budget) == (w, h) and
            (budget.max_ratio is None or max(w, h) / min(w, h) <= budget.max_ratio))


def _canvas(w: int, h: int, budget: Budget) -> tuple[int, int]:
    """Size after padding to the budget's aspect-ratio limit (the content keeps its ratio)."""
    r = budget.max_ratio
    if not r or max(w, h) / min(w, h) <= r:
        return w, h
    return max(w, math.ceil(h / r)), max(h, math.ceil(w / r))


def _content(w: int, h: int, budget: Budget) -> tuple[int, int]:
    """Content size inside the fitted canvas."""
    cw, ch = _canvas(w, h, budget)
    tw, th = _scaled(cw, ch, budget)
    return (w, h) if (tw, th) == (cw, ch) else (max(1, round(w * tw / cw)),
                                                  max(1, round(h * th / ch)))


def _fit_sync(image: ImageData, mime: str, label: str, budget: Budget) -> ImageData:
    """Decode once, resize once, pad to the ratio limit, orient, encode JPEG within budget."""
    im, orientation = _decode(image.data, mime, label, lambda w, h: _content(w, h, budget))
    im = _flatten(im)
    cw, ch = _canvas(im.width, im.height, budget)
    if (cw, ch) != im.size:
        canvas = Image.new(im.mode, (cw, ch), 255 if im.mode == "L" else (255, 255, 255))
        canvas.paste(im, ((cw - im.width) // 2, (ch - im.height) // 2))
        im = _swap(im, canvas)
    im = _orient(im, orientation)
    marks = provenance.segments(image.data, mime)  # the original's provenance, or the AI marker
    if len(marks) > budget.max_bytes // 4:  # a tiny budget: the marker alone, or nothing
        marks = provenance.segments(b"", "")
        marks = marks if len(marks) <= budget.max_bytes // 4 else b""
    data, im = _encode(im, "JPEG", budget.max_bytes - len(marks))
    return _result(provenance.stamp(data, marks), im, "JPEG", image.name)


def _decode_size(data: bytes, mime: str) -> tuple[int, int]:
    """Size from Pillow's lazy open (header only), for HEIC/AVIF files without an ispe box."""
    if mime == "image/heic" and not _heif_ready():
        raise UnsupportedImage("HEIC image (HEIC support is not installed)")
    with _decoding(_KINDS[mime][1]), Image.open(io.BytesIO(data),
                                                formats=(_KINDS[mime][0],)) as im:
        return im.size


async def fit(image: ImageData, budget: Budget) -> ImageData:
    """Return ``image`` itself when it fits ``budget``, else one JPEG re-encode that does."""
    mime, label, dims = _identify(image.data)
    if _fits(mime, len(image.data), dims, budget):
        return image  # its MIME type was sniffed from these bytes when it was made
    return await _run(_fit_sync, image, mime, label, budget)


def _thumb_sync(data: bytes, mime: str, label: str, side: int, name: str) -> ImageData:
    """Decode (draft-scaled), shrink to ``side``, flatten, orient; JPEG quality 85."""
    im, orientation = _decode(data, mime, label, lambda w, h: _scaled(w, h, Budget(0, side)))
    im = _orient(_flatten(im), orientation)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return _result(provenance.stamp(buf.getvalue(), provenance.segments(data, mime)), im, "JPEG",
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
