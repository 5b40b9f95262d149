"""Pillow operations on a decoded image, run in a worker thread by bot/images.py: colour and
mode normalised to 8-bit sRGB, one resize, EXIF orientation, alpha flattened, and an encode that
fits a byte cap; plus the size arithmetic of a platform's budget."""

from __future__ import annotations

import functools
import io
import math

from PIL import Image, ImageCms

from bot.domain import Budget, ImageData
from bot.errors import InputTooLarge

#: EXIF orientation values (tag 0x0112) other than 1, as the transpose that undoes each.
ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
          6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_90}


@functools.cache
def _srgb() -> ImageCms.ImageCmsProfile:
    """The sRGB profile every output is converted to."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def normalize(im: Image.Image, icc: bytes | None) -> Image.Image:
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
        out = swap(out, out.convert(out.mode[:-1]))
    out.info = {}
    return out


def swap(old: Image.Image, new: Image.Image) -> Image.Image:
    """Return ``new`` after releasing ``old``'s pixels."""
    if new is not old:
        old.close()
    return new


def resize(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize once, releasing the larger copy.

    BICUBIC (antialiased when downscaling) costs ~0.7x LANCZOS for no visible loss at these
    ratios; ``reducing_gap`` box-reduces first by whole factors when shrinking 4x or more.
    """
    if im.size == size:
        return im
    return swap(im, im.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0))


def orient(im: Image.Image, orientation: int) -> Image.Image:
    """Apply the EXIF orientation (done last, on the smallest copy)."""
    return im if orientation == 1 else swap(im, im.transpose(ORIENT[orientation]))


def flatten(im: Image.Image) -> Image.Image:
    """Composite alpha onto white for JPEG, releasing the input."""
    if im.mode not in ("RGBA", "LA"):
        return im
    out = Image.new(im.mode[:-1], im.size, 255 if im.mode == "LA" else (255, 255, 255))
    out.paste(im, mask=im.getchannel("A"))
    return swap(im, out)


def encode(im: Image.Image, fmt: str, max_bytes: int) -> tuple[bytes, Image.Image]:
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
        im = resize(im, (max(1, int(im.width * k)), max(1, int(im.height * k))))
        qualities = qualities[-2:]


def wrap(data: bytes, im: Image.Image, fmt: str, name: str) -> ImageData:
    """Wrap encoded bytes, renaming ``name`` to the new extension; closes ``im``."""
    ext = "jpg" if fmt == "JPEG" else "png"
    stem = name.rsplit(".", 1)[0] if "." in name else name
    out = ImageData(data, f"image/{'jpeg' if fmt == 'JPEG' else 'png'}", im.width, im.height,
                    f"{stem}.{ext}" if stem else "")
    im.close()
    return out


def scaled(w: int, h: int, budget: Budget) -> tuple[int, int]:
    """Largest size with the same aspect ratio within the budget's side, pixel and w+h limits."""
    k = 1.0
    if budget.max_side:
        k = min(k, budget.max_side / max(w, h))
    if budget.max_pixels:
        k = min(k, math.sqrt(budget.max_pixels / (w * h)))
    if budget.max_sum_wh:
        k = min(k, budget.max_sum_wh / (w + h))
    return (w, h) if k >= 1.0 else (max(1, int(w * k)), max(1, int(h * k)))


def canvas_size(w: int, h: int, budget: Budget) -> tuple[int, int]:
    """Size after padding to the budget's aspect-ratio limit (the content keeps its ratio)."""
    r = budget.max_ratio
    if not r or max(w, h) / min(w, h) <= r:
        return w, h
    return max(w, math.ceil(h / r)), max(h, math.ceil(w / r))


def content_size(w: int, h: int, budget: Budget) -> tuple[int, int]:
    """Content size inside the fitted canvas."""
    cw, ch = canvas_size(w, h, budget)
    tw, th = scaled(cw, ch, budget)
    return (w, h) if (tw, th) == (cw, ch) else (max(1, round(w * tw / cw)),
                                                  max(1, round(h * th / ch)))
