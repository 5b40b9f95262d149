"""bot.images: a corpus of bad and awkward inputs built here, output fitting, thumbnails, probe."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import resource
import struct
import sys
import threading
import tracemalloc
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pytest
from PIL import ExifTags, Image, ImageChops, ImageCms, ImageOps, PngImagePlugin

from bot import images, provenance
from bot.domain import ImageData
from bot.errors import InputTooLarge, UnsupportedImage
from bot.images import Budget, fit, prepare_reference, probe, thumbnail

DISCORD = Budget(max_bytes=10 * 1024 * 1024)
TELEGRAM_PHOTO = Budget(max_bytes=10_000_000, max_side=2560, max_sum_wh=10_000, max_ratio=20)
TELEGRAM_DOCUMENT = Budget(max_bytes=50_000_000, formats=("image/png", "image/jpeg",
                                                           "image/webp", "image/gif"))


# ---------------------------------------------------------------- builders


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    """Encode ``im`` with Pillow."""
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def png_chunk(tag: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def raw_png(w: int, h: int, depth: int, color: int, row: Callable[[int], bytes] | None = None,
            *, corrupt: bool = False) -> bytes:
    """A PNG written by hand; rows come from ``row(y)`` or are zero, streamed through zlib.

    Zero images of any size cost only their compressed size: the rows are never all in memory.
    """
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    stride = 1 + (w * depth * channels + 7) // 8
    comp = zlib.compressobj(9)
    parts = []
    if row is None:
        block = bytes(stride) * 512
        for _ in range(h // 512):
            parts.append(comp.compress(block))
        parts.append(comp.compress(bytes(stride) * (h % 512)))
    else:
        parts.extend(comp.compress(b"\0" + row(y)) for y in range(h))
    idat = b"".join(parts) + comp.flush()
    if corrupt:
        idat = idat[:20] + bytes(range(256)) * 4 + idat[20:]
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def photo(w: int, h: int, bits: int = 2, mode: str = "RGB") -> Image.Image:
    """Photo-like content: smooth gradients plus a little noise (so PNG doesn't compress well)."""
    gx = Image.linear_gradient("L").resize((w, h))
    gy = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize((w, h))
    mask = (1 << bits) - 1

    def noise() -> Image.Image:
        return Image.frombytes("L", (w, h), os.urandom(w * h)).point(lambda v: v & mask)

    im = Image.merge("RGB", (ImageChops.add(gx, noise()), ImageChops.add(gy, noise()),
                             ImageChops.add(ImageChops.invert(gx), noise())))
    if mode == "RGBA":
        im.putalpha(gx.point(lambda v: 64 + v // 2))
    return im if mode in ("RGB", "RGBA") else im.convert(mode)


def two_tone(w: int, h: int, mode: str = "RGB") -> Image.Image:
    """Left half red, right half blue: makes orientation checkable."""
    im = Image.new("RGB", (w, h), (220, 20, 20))
    im.paste((20, 20, 220), (w // 2, 0, w, h))
    return im.convert(mode) if mode != "RGB" else im


def exif_gps_jpeg() -> bytes:
    """A phone-style JPEG: orientation 6, camera make/model and a GPS position."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "SecretCam"
    exif[ExifTags.Base.Model] = "Model-X42"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 22.0, 11.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (4.0, 53.0, 7.0)
    return encode(two_tone(400, 200), "JPEG", exif=exif, quality=95)


def cmyk_jpeg() -> bytes:
    """A CMYK JPEG (as print workflows export) of pure red ink mix."""
    return encode(Image.new("CMYK", (120, 80), (0, 255, 255, 0)), "JPEG")


def animated_gif(frames: int = 500) -> bytes:
    """An animated GIF whose first frame is green and the others are not."""
    seq = [Image.new("P", (64, 48), 0)] + [Image.new("P", (64, 48), 1 + i % 200)
                                            for i in range(frames - 1)]
    for f in seq:
        f.putpalette([0, 200, 0] + [255, 0, 255] * 255)
    return encode(seq[0], "GIF", save_all=True, append_images=seq[1:], duration=20, loop=0)


def palette_png_transparent() -> bytes:
    """A palette PNG where index 0 is transparent."""
    im = Image.new("P", (40, 40), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (20, 0, 40, 40))
    return encode(im, "PNG", transparency=0)


def png_with_metadata() -> bytes:
    """A PNG carrying text chunks, EXIF and an ICC profile (LAB: not RGB, so not applied)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "GPS 52.37N 4.89E taken at home")
    info.add_itxt("Author", "Secret Person")
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SecretCam"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    return encode(two_tone(50, 30), "PNG", pnginfo=info, exif=exif, icc_profile=icc)


def swapped_primaries_profile() -> bytes:
    """An RGB ICC profile whose red and green primaries are swapped (and not called sRGB)."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", icc[128:132])[0]
    entries = {bytes(icc[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(count)}
    r, g = entries[b"rXYZ"], entries[b"gXYZ"]
    icc[r + 4:r + 12], icc[g + 4:g + 12] = icc[g + 4:g + 12], icc[r + 4:r + 12]
    icc = icc.replace(b"sRGB", b"wide").replace("sRGB".encode("utf-16-be"),
                                                "wide".encode("utf-16-be"))
    return bytes(icc)


def sixteen_bit_rgb_png() -> bytes:
    """A 48-bit RGB PNG (Pillow can't write one, so it's built by hand)."""
    return raw_png(64, 32, 16, 2, lambda y: struct.pack(">HHH", 50000, 1000, 30000) * 64)


def heic_header_only() -> bytes:
    """Something that says it is HEIC (ftyp heic) but has no image inside."""
    return b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 100


def gif_with_huge_frame(side: int) -> bytes:
    """A GIF whose header says 10x10 but whose first frame is ``side`` x ``side``."""
    return (b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, side, side, 0) + b"\x02\x02\x4c\x01\x00\x3b")


MP4 = b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41" + b"\0\0\0\x08free" + b"\0" * 200
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
HTML = b"<!DOCTYPE html>\n<html><head><title>Not an image</title></head><body>hi</body></html>"
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@functools.cache
def big_png() -> bytes:
    """A 5504x3072 photo-like PNG of about 20 MB, the size of a Gemini 4K 16:9 result."""
    return encode(photo(5504, 3072), "PNG", compress_level=1)


# ---------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    """One corpus input and what must happen to it."""

    build: Callable[[], bytes]
    error: type[Exception] | None = None
    what: str = ""  # substring of UnsupportedImage's ``what``
    check: Callable[[bytes, ImageData], None] | None = None
    name: str = "upload.png"


def _containers(data: bytes) -> set[bytes]:
    """PNG chunk types, or JPEG marker segments before the scan (e.g. b"ffe1" for EXIF)."""
    found: set[bytes] = set()
    if data.startswith(b"\x89PNG"):
        at = 8
        while at < len(data):
            length = struct.unpack(">I", data[at:at + 4])[0]
            found.add(data[at + 4:at + 8])
            at += 12 + length
        return found
    at = 2
    while data[at + 1] != 0xDA:  # up to start of scan
        found.add(data[at:at + 2].hex().encode())
        at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
    return found


def _clean(out: ImageData, *, marked: bool = False) -> None:
    """No metadata leaves: no EXIF, GPS, XMP, ICC, comments or text chunks.

    ``marked``: a fitted result, which carries exactly one XMP segment, the AI-media marker
    (issue 19.4), and nothing of the user's or the camera's.
    """
    allowed = ({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"} if out.mime == "image/png" else
               {b"ffe0", b"ffdb", b"ffc0", b"ffc4"})  # JFIF, tables, frame header
    if marked:
        allowed |= {b"ffe1"}
        xmp = [p for m, p in provenance._jpeg_segments(out.data) if m == 0xE1]
        assert len(xmp) == 1 and xmp[0].startswith(b"http://ns.adobe.com/xap/1.0/\x00"), xmp
        assert provenance.AI_SOURCE_TYPE.encode() in xmp[0]
    assert _containers(out.data) <= allowed, _containers(out.data)
    for marker in (b"SecretCam", b"Secret Person", b"Model-X42"):
        assert marker not in out.data, marker
    with Image.open(io.BytesIO(out.data)) as im:
        assert len(im.getexif()) == 0
        assert "icc_profile" not in im.info and "exif" not in im.info
        assert (im.width, im.height) == (out.width, out.height)


def _is(mime: str, size: tuple[int, int] | None = None, mode: str | None = None,
        pixel: tuple[tuple[int, int], tuple[int, ...]] | None = None) -> Callable[
            [bytes, ImageData], None]:
    """A check: output MIME, size, decoded mode and one pixel (with JPEG tolerance)."""

    def check(_: bytes, out: ImageData) -> None:
        assert out.mime == mime
        with Image.open(io.BytesIO(out.data)) as im:
            if size:
                assert im.size == size
            if mode:
                assert im.mode == mode
            if pixel:
                value = im.getpixel(pixel[0])
                assert value is not None
                got = value if isinstance(value, tuple) else (value,)
                assert all(abs(a - b) <= 12 for a, b in zip(got, pixel[1], strict=True)), got

    return check


def _exif_rotated(src: bytes, out: ImageData) -> None:
    """Orientation 6 applied (400x200 stored -> 200x400 shown, red on top), GPS gone."""
    with Image.open(io.BytesIO(src)) as im:
        assert im.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the input really had GPS
        expected = ImageOps.exif_transpose(im)
    assert (out.width, out.height) == expected.size == (200, 400)
    with Image.open(io.BytesIO(out.data)) as got:
        for xy in ((100, 50), (100, 350)):
            a, b = got.getpixel(xy), expected.getpixel(xy)
            assert isinstance(a, tuple) and isinstance(b, tuple)
            assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 16
        assert got.getpixel((100, 50))[0] > 180  # type: ignore[index]


def _limited(max_side: int, max_bytes: int) -> Callable[[bytes, ImageData], None]:
    """A check: long side and byte size within the limits, aspect ratio kept within 1%."""

    def check(src: bytes, out: ImageData) -> None:
        with Image.open(io.BytesIO(src)) as im:
            ratio = im.width / im.height
        assert max(out.width, out.height) <= max_side and len(out.data) <= max_bytes
        assert abs(out.width / out.height - ratio) / ratio < 0.01

    return check


CORPUS: dict[str, Case] = {
    "png-bomb-30000x30000": Case(lambda: raw_png(30000, 30000, 1, 0), UnsupportedImage,
                                 "30000x30000 PNG"),
    "png-bomb-8000x8000-under-pillow-limit": Case(lambda: raw_png(8000, 8000, 1, 0),
                                                  UnsupportedImage, "8000x8000 PNG"),
    "gif-bomb-header": Case(lambda: b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\0" * 30,
                            UnsupportedImage, "65535x65535 GIF"),
    "gif-frame-larger-than-screen": Case(lambda: gif_with_huge_frame(9000), UnsupportedImage,
                                         "9000x9000 GIF"),
    "truncated-progressive-jpeg": Case(lambda: (d := encode(photo(600, 400, 6), "JPEG",
                                                            progressive=True))[: len(d) * 9 // 10],
                                       UnsupportedImage, "truncated JPEG"),
    "truncated-jpeg": Case(lambda: (d := encode(photo(600, 400, 6), "JPEG"))[: len(d) // 2],
                           UnsupportedImage, "truncated JPEG"),
    "jpeg-soi-only": Case(lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF", UnsupportedImage,
                          "truncated JPEG"),
    "truncated-png": Case(lambda: (d := encode(photo(300, 200, 6), "PNG"))[: len(d) // 2],
                          UnsupportedImage, "truncated PNG"),
    "corrupt-png-idat": Case(lambda: raw_png(64, 64, 8, 2, corrupt=True), UnsupportedImage,
                             "PNG"),
    "zero-bytes": Case(lambda: b"", UnsupportedImage, "empty file"),
    "60-mb-file": Case(lambda: b"\xff\xd8\xff" + bytes(60_000_000), InputTooLarge),
    "animated-gif-500-frames": Case(animated_gif, check=_is("image/jpeg", (64, 48), "RGB",
                                                            ((5, 5), (0, 200, 0)))),
    "cmyk-jpeg": Case(cmyk_jpeg, check=_is("image/jpeg", (120, 80), "RGB", ((5, 5), (255, 0, 0)))),
    "16-bit-gray-png": Case(lambda: encode(Image.new("I;16", (64, 32), 40000), "PNG"),
                            check=_is("image/jpeg", (64, 32), "L", ((3, 3), (155,)))),
    "16-bit-rgb-png": Case(sixteen_bit_rgb_png,
                           check=_is("image/jpeg", (64, 32), "RGB", ((3, 3), (195, 4, 117)))),
    "exif-rotated-gps-photo": Case(exif_gps_jpeg, check=_exif_rotated, name="IMG_0001.JPG"),
    "png-icc-text-exif": Case(png_with_metadata, check=_is("image/jpeg", (50, 30), "RGB")),
    "jpeg-with-wide-gamut-icc": Case(lambda: encode(Image.new("RGB", (40, 30), (200, 30, 30)),
                                                    "JPEG",
                                                    icc_profile=swapped_primaries_profile()),
                                     check=_is("image/jpeg", (40, 30), "RGB",
                                               ((5, 5), (30, 200, 30)))),  # converted to sRGB
    "palette-png-transparency": Case(palette_png_transparent,
                                     check=_is("image/png", (40, 40), "RGBA",
                                               ((5, 5), (0, 0, 0, 0)))),
    "la-png": Case(lambda: encode(Image.new("LA", (30, 20), (90, 128)), "PNG"),
                   check=_is("image/png", (30, 20), "LA", ((1, 1), (90, 128)))),
    "rgba-fully-opaque": Case(lambda: encode(Image.new("RGBA", (30, 20), (1, 2, 250, 255)), "PNG"),
                              check=_is("image/jpeg", (30, 20), "RGB")),
    "1-bit-png": Case(lambda: encode(Image.new("1", (30, 20), 1), "PNG"),
                      check=_is("image/jpeg", (30, 20), "L", ((1, 1), (255,)))),
    "svg": Case(lambda: SVG, UnsupportedImage, "SVG image", name="logo.svg.png"),
    "pdf": Case(lambda: PDF, UnsupportedImage, "PDF document", name="scan.png"),
    "html-named-jpg": Case(lambda: HTML, UnsupportedImage, "HTML page", name="photo.jpg"),
    "mp4-header": Case(lambda: MP4, UnsupportedImage, "MP4 video", name="clip.png"),
    "plain-text-named-png": Case(lambda: b"this is not an image\n" * 20, UnsupportedImage,
                                 "text"),
    "zip-archive": Case(lambda: b"PK\x03\x04" + b"\0" * 100, UnsupportedImage, "ZIP archive"),
    "bmp": Case(lambda: encode(Image.new("RGB", (8, 8)), "BMP"), UnsupportedImage, "BMP image"),
    "webp": Case(lambda: encode(two_tone(80, 60), "WEBP", quality=90),
                 check=_is("image/jpeg", (80, 60), "RGB", ((5, 5), (220, 20, 20)))),
    "webp-lossless-alpha": Case(lambda: encode(Image.new("RGBA", (80, 60), (9, 9, 9, 60)),
                                               "WEBP", lossless=True),
                                check=_is("image/png", (80, 60), "RGBA", ((5, 5), (9, 9, 9, 60)))),
    "gif-static": Case(lambda: encode(two_tone(50, 50), "GIF"),
                       check=_is("image/jpeg", (50, 50), "RGB", ((45, 5), (20, 20, 220)))),
    "avif": Case(lambda: encode(two_tone(64, 64), "AVIF"), check=_is("image/jpeg", (64, 64))),
    "tiny-1x1": Case(lambda: encode(Image.new("RGB", (1, 1), (7, 8, 9)), "PNG"),
                     check=_is("image/jpeg", (1, 1))),
    "extreme-aspect-10000x10": Case(lambda: encode(photo(10000, 10), "PNG"),
                                    check=_is("image/jpeg", (2048, 2))),
    "big-jpeg-6000x4000": Case(lambda: encode(photo(6000, 4000, 5), "JPEG", quality=95),
                               check=_limited(2048, 5_000_000)),
    "alpha-noise-png-over-output-limit": Case(lambda: encode(photo(2048, 2048, 8, "RGBA"),
                                                             "PNG", compress_level=1),
                                              check=_limited(2048, 5_000_000)),
}


@functools.cache
def corpus_input(key: str) -> bytes:
    """Build (once) the corpus entry ``key``."""
    return CORPUS[key].build()


async def run_case(key: str) -> None:
    """Feed one corpus input to prepare_reference and check the outcome."""
    case, data = CORPUS[key], corpus_input(key)
    if case.error is not None:
        with pytest.raises(case.error) as info:
            await prepare_reference(data, name=case.name)
        if case.what:
            assert isinstance(info.value, UnsupportedImage)
            assert case.what in info.value.params["what"]
        return
    out = await prepare_reference(data, name=case.name)
    _clean(out)
    assert out.size_bytes <= 5_000_000 and max(out.width, out.height) <= 2048
    assert out.name.endswith("." + out.extension)
    if case.check:
        case.check(data, out)


def test_corpus_is_big_enough() -> None:
    """At least 20 bad or awkward inputs."""
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("key", list(CORPUS))
async def test_corpus(key: str) -> None:
    """Each corpus input gets the right outcome."""
    await run_case(key)


async def test_corpus_peak_memory(capsys: pytest.CaptureFixture[str]) -> None:
    """The whole corpus, concurrently, keeps the process's peak memory bounded."""
    for key in CORPUS:
        corpus_input(key)
    tracemalloc.start()
    try:
        await asyncio.gather(*(run_case(key) for key in CORPUS))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with capsys.disabled():
        print(f"\n[images corpus] {len(CORPUS)} inputs: tracemalloc peak {peak / 1e6:.1f} MB "
              f"(Python buffers), process peak RSS {rss_mb:.0f} MB", file=sys.stderr)
    assert rss_mb < 1536


def test_pillow_globals_untouched() -> None:
    """The bomb guard never changes Pillow's process-wide limit."""
    assert Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3


@pytest.mark.parametrize("warnings_as", ["error", "ignore"])
async def test_pillow_bomb_warning_is_handled(warnings_as: Literal["error", "ignore"]) -> None:
    """A frame past Pillow's own warning limit is refused whether its warning raises or not."""
    with warnings.catch_warnings():
        warnings.simplefilter(warnings_as, Image.DecompressionBombWarning)
        with pytest.raises(UnsupportedImage) as info:
            await prepare_reference(gif_with_huge_frame(12000))
    assert "GIF" in info.value.params["what"]


async def test_heic_accepted_when_extra_installed() -> None:
    """With pillow-heif installed, HEIC photos are references like any other."""
    heif = pytest.importorskip("pillow_heif")
    heif.register_heif_opener()
    out = await prepare_reference(encode(two_tone(64, 48), "HEIF"), name="IMG_1.HEIC")
    assert (out.mime, out.width, out.height, out.name) == ("image/jpeg", 64, 48, "IMG_1.jpg")
    _clean(out)


async def test_heic_refused_without_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pillow-heif a HEIC upload is named as such, not as a damaged file."""
    monkeypatch.setattr(images, "_heif_ready", lambda: False)
    with pytest.raises(UnsupportedImage) as info:
        await prepare_reference(heic_header_only())
    assert "HEIC" in info.value.params["what"]


async def test_reference_limits_are_parameters() -> None:
    """max_side, max_output_bytes and max_input_bytes are honoured."""
    data = encode(photo(1200, 800, 6), "PNG")
    out = await prepare_reference(data, max_side=300, max_output_bytes=20_000)
    assert max(out.width, out.height) <= 300 and out.size_bytes <= 20_000
    with pytest.raises(InputTooLarge) as info:
        await prepare_reference(data, max_input_bytes=1000)
    assert info.value.params["limit_mb"] == 0.0


# ---------------------------------------------------------------- fit, thumbnail, probe


def _aspect_kept(out: ImageData, w: int, h: int) -> None:
    """Aspect ratio within 1% of ``w``/``h``."""
    assert abs(out.width / out.height - w / h) / (w / h) < 0.01


async def test_fit_passes_small_image_through_untouched() -> None:
    """A result that already fits is returned as is: same object, same bytes, no decode."""
    for data, mime in ((encode(photo(1024, 1024), "PNG"), "image/png"),
                       (encode(photo(800, 600), "JPEG"), "image/jpeg")):
        image = ImageData(data, mime, name="r.bin")
        for budget in (DISCORD, TELEGRAM_PHOTO, TELEGRAM_DOCUMENT):
            out = await fit(image, budget)
            assert out is image and out.data is data


async def test_fit_pass_through_fixes_a_wrong_mime_label() -> None:
    """Bytes that fit are never touched, even when the caller mislabelled their type."""
    data = encode(photo(64, 32), "JPEG")
    out = await fit(ImageData(data, "image/png"), DISCORD)
    assert out.data is data and out.mime == "image/jpeg"  # ImageData sniffs its own type


async def test_fit_big_png_to_discord() -> None:
    """The ~20 MB 5504x3072 PNG becomes a JPEG under 10 MiB with the same aspect ratio."""
    data = big_png()
    assert 15e6 < len(data) < 30e6
    out = await fit(ImageData(data, "image/png", 5504, 3072, "result.png"), DISCORD)
    assert out.mime == "image/jpeg" and out.size_bytes <= 10 * 1024 * 1024
    assert out.name == "result.jpg"
    _aspect_kept(out, 5504, 3072)
    _clean(out, marked=True)


async def test_fit_big_png_to_telegram_photo() -> None:
    """Photo budget: <= 10 MB, long side 2560, w+h <= 10000, aspect kept."""
    out = await fit(ImageData(big_png(), "image/png"), TELEGRAM_PHOTO)
    assert out.size_bytes <= 10_000_000 and max(out.width, out.height) <= 2560
    assert out.width + out.height <= 10_000 and out.width == 2560
    _aspect_kept(out, 5504, 3072)


async def test_fit_big_png_to_telegram_document() -> None:
    """Document budget (50 MB): the original passes through byte for byte."""
    image = ImageData(big_png(), "image/png")
    assert await fit(image, TELEGRAM_DOCUMENT) is image


async def test_fit_steps_quality_then_size() -> None:
    """A tight budget is met by lowering quality and then size, keeping the aspect ratio."""
    image = ImageData(encode(photo(1600, 900, 7), "PNG"), "image/png")
    out = await fit(image, Budget(max_bytes=60_000))
    assert out.size_bytes <= 60_000 and out.width < 1600
    _aspect_kept(out, 1600, 900)


async def test_fit_flattens_alpha_and_converts_formats() -> None:
    """Transparent pixels become white; a format the budget lacks (GIF) is re-encoded."""
    rgba = Image.new("RGBA", (100, 50), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (50, 0, 100, 50))
    out = await fit(ImageData(encode(rgba, "PNG"), "image/png"), Budget(5000, formats=()))
    with Image.open(io.BytesIO(out.data)) as im:
        assert im.mode == "RGB" and min(im.getpixel((10, 10))) > 230  # type: ignore[arg-type]
    gif = ImageData(encode(two_tone(40, 40), "GIF"), "image/gif")
    out = await fit(gif, DISCORD)
    assert out.mime == "image/jpeg" and (out.width, out.height) == (40, 40)


async def test_fit_pads_to_the_ratio_limit() -> None:
    """A 4000x100 strip for Telegram (ratio <= 20) is padded, never stretched."""
    strip = ImageData(encode(two_tone(4000, 100), "PNG"), "image/png")
    out = await fit(strip, TELEGRAM_PHOTO)
    assert out.width / out.height <= 20 and out.width == 2560
    with Image.open(io.BytesIO(out.data)) as im:
        assert im.getpixel((5, 0)) == (255, 255, 255)  # padding
        centre = im.getpixel((5, out.height // 2))
        assert isinstance(centre, tuple) and centre[0] > 180 and centre[2] < 80


async def test_fit_applies_exif_orientation_when_reencoding() -> None:
    """A rotated JPEG that must be re-encoded comes out upright (metadata is dropped)."""
    out = await fit(ImageData(exif_gps_jpeg(), "image/jpeg"), Budget(10**6, formats=("image/png",)))
    assert out.height > out.width
    _clean(out, marked=True)


async def test_fit_refuses_non_images() -> None:
    """fit names what it got when it isn't an image."""
    with pytest.raises(UnsupportedImage):
        await fit(ImageData(PDF, "image/png"), DISCORD)


async def test_thumbnail() -> None:
    """Thumbnails are small JPEGs with the aspect ratio kept."""
    out = await thumbnail(ImageData(encode(photo(1600, 900), "PNG"), "image/png", name="a.png"))
    assert (out.mime, out.width, out.height, out.name) == ("image/jpeg", 320, 180, "a.jpg")
    out = await thumbnail(ImageData(palette_png_transparent(), "image/png"), side=20)
    assert (out.width, out.height) == (20, 20)


async def test_probe_reads_headers_only() -> None:
    """probe gives MIME and size for each format, from the header (even of a huge image)."""
    assert await probe(raw_png(30000, 30000, 1, 0)[:64]) == ("image/png", 30000, 30000)
    assert await probe(encode(two_tone(33, 21), "PNG")) == ("image/png", 33, 21)
    assert await probe(encode(two_tone(33, 21), "JPEG")[:2000]) == ("image/jpeg", 33, 21)
    assert await probe(encode(two_tone(33, 21), "GIF")) == ("image/gif", 33, 21)
    assert await probe(encode(two_tone(33, 21), "WEBP")) == ("image/webp", 33, 21)
    assert await probe(encode(two_tone(33, 21), "WEBP", lossless=True)) == ("image/webp", 33, 21)
    assert await probe(encode(Image.new("RGBA", (33, 21)), "WEBP")) == ("image/webp", 33, 21)
    assert await probe(encode(two_tone(33, 21), "AVIF")) == ("image/avif", 33, 21)
    for bad, what in ((PDF, "PDF document"), (b"", "empty file"), (MP4, "MP4 video"),
                      (b"\x89PNG\r\n\x1a\n", "truncated PNG")):
        with pytest.raises(UnsupportedImage) as info:
            await probe(bad)
        assert info.value.params["what"] == what


async def test_decoding_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare_reference, fit and thumbnail do their Pillow work in worker threads."""
    threads: list[int] = []
    for fn in ("_prepare_sync", "_fit_sync", "_thumb_sync"):
        real = getattr(images, fn)

        def spy(*args: object, _real: Callable[..., ImageData] = real) -> ImageData:
            threads.append(threading.get_ident())
            return _real(*args)

        monkeypatch.setattr(images, fn, spy)
    image = ImageData(encode(photo(300, 200), "PNG"), "image/png")
    await prepare_reference(image.data)
    await fit(image, Budget(1000))
    await thumbnail(image)
    assert len(threads) == 3 and threading.get_ident() not in threads
