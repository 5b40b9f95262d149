"""Where an image file ends, by its own structure, so that bytes after it can be refused.

An upstream can append anything to a valid image (a PNG followed by 400 MB of padding decodes
fine: decoders stop at the end of the image). So the end is found by walking the container:

- PNG: chunks (length, type, data, CRC) up to and including ``IEND``
  (https://www.w3.org/TR/png-3/#5Chunk-layout).
- JPEG: marker segments with their lengths, skipping entropy-coded data after each ``SOS`` (where
  ``FF 00`` is a stuffed byte and ``FF D0``-``D7`` are restart markers) up to the ``EOI`` that
  closes the frame (ITU T.81 annex B, https://www.w3.org/Graphics/JPEG/itu-t81.pdf). An ``EOI``
  inside an APP segment (an EXIF thumbnail) is skipped with its segment.
- WebP: the RIFF container's length field (https://developers.google.com/speed/webp/docs/riff_container).
- GIF: blocks and data sub-blocks up to the ``3B`` trailer
  (https://www.w3.org/Graphics/GIF/spec-gif89a.txt).
"""

from __future__ import annotations

import struct

from bot.errors import UpstreamError

#: Bytes tolerated after the end (some encoders pad to an even or word boundary); trimmed off.
TRAILING_SLACK = 16
FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF"})


class _Short(Exception):
    """The structure runs past the end of the data."""


def image_end(data: bytes, fmt: str) -> int:
    """Offset just past the image of format ``fmt`` (Pillow's name) in ``data``."""
    walk = {"PNG": _png_end, "JPEG": _jpeg_end, "WEBP": _webp_end, "GIF": _gif_end}.get(fmt)
    if walk is None:
        raise UpstreamError(f"unexpected image format from upstream ({fmt or 'unknown'})")
    try:
        end = walk(data)
    except (_Short, struct.error, IndexError):
        raise UpstreamError(f"{fmt} image data is truncated") from None
    if end > len(data):
        raise UpstreamError(f"{fmt} image data is truncated")
    return end


def check_trailing(data: bytes, fmt: str) -> int:
    """The image's length in ``data``; UpstreamError if more than a few bytes follow it."""
    end = image_end(data, fmt)
    extra = len(data) - end
    if extra > TRAILING_SLACK:
        raise UpstreamError(f"{extra} unexpected bytes after the end of the {fmt} image")
    return end


def _png_end(data: bytes) -> int:
    pos = 8
    while True:
        length, kind = struct.unpack_from(">I4s", data, pos)
        pos += 12 + int(length)
        if pos > len(data):
            raise _Short
        if kind == b"IEND":
            return pos


def _jpeg_end(data: bytes) -> int:
    if data[:2] != b"\xff\xd8":
        raise _Short
    pos = 2
    size = len(data)
    while True:
        if pos >= size:
            raise _Short
        if data[pos] != 0xFF:
            raise UpstreamError("JPEG structure is damaged (no marker where one is due)")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return pos + 2
        if marker in (0x01, *range(0xD0, 0xD8)):  # stand-alone markers: no length
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        pos += 2 + int(length)
        if marker == 0xDA:  # SOS: entropy-coded data follows until the next real marker
            pos = _scan_end(data, pos)


def _scan_end(data: bytes, pos: int) -> int:
    """Offset of the first marker after entropy-coded data starting at ``pos``."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            raise _Short
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2
            continue
        if following == 0xFF:  # fill bytes: the marker is further on
            pos += 1
            continue
        return pos


def _webp_end(data: bytes) -> int:
    riff, size, kind = struct.unpack_from("<4sI4s", data, 0)
    if riff != b"RIFF" or kind != b"WEBP":
        raise _Short
    return 8 + int(size)


def _gif_end(data: bytes) -> int:
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while True:
        block = data[pos]
        if block == 0x3B:  # trailer
            return pos + 1
        if block == 0x21:  # extension: label, then sub-blocks
            pos = _sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image descriptor, local colour table, LZW code size, sub-blocks
            local = data[pos + 9]
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            pos = _sub_blocks(data, pos + 1)
        else:
            raise UpstreamError("GIF structure is damaged (unknown block)")


def _sub_blocks(data: bytes, pos: int) -> int:
    while True:
        length = data[pos]
        pos += 1 + length
        if length == 0:
            return pos
