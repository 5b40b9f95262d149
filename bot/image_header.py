"""Pixel sizes read from image headers without decoding: a 30000x30000 bomb is refused unopened.

Written by hand because Pillow's own ``Image.open`` already allocates decoder state, and the point
is to look at a few dozen bytes first. Layouts: PNG IHDR (RFC 2083 sec. 4.1.1), GIF logical screen
descriptor, WebP VP8/VP8L/VP8X headers (RFC 9649), JPEG SOFn markers (ITU T.81 B.2.2), and the
HEIF ``ispe`` property (ISO/IEC 23008-12) for HEIC.
"""

from __future__ import annotations

import re
import struct


def header_size(mime: str, d: bytes) -> tuple[int, int] | None:
    """Pixel size read from the header bytes without Pillow, or None when it can't be read."""
    try:
        if mime == "image/png":
            return struct.unpack(">II", d[16:24]) if d[12:16] == b"IHDR" else None
        if mime == "image/gif":
            return struct.unpack("<HH", d[6:10])
        if mime == "image/webp":
            chunk = d[12:16]
            if chunk == b"VP8X":
                return 1 + int.from_bytes(d[24:27], "little"), 1 + int.from_bytes(d[27:30],
                                                                                 "little")
            if chunk == b"VP8L" and d[20] == 0x2F:
                bits = int.from_bytes(d[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8 " and d[23:26] == b"\x9d\x01\x2a":
                w, h = struct.unpack("<HH", d[26:30])
                return w & 0x3FFF, h & 0x3FFF
            return None
        if mime == "image/jpeg":
            i = 2
            while i + 9 <= len(d) and d[i] == 0xFF:
                marker = d[i + 1]
                if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:
                    i += 1 if marker == 0xFF else 2
                    continue
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">HH", d[i + 5:i + 9])
                    return w, h
                i += 2 + struct.unpack(">H", d[i + 2:i + 4])[0]
            return None
        sizes = [struct.unpack(">II", d[m.start() + 8:m.start() + 16])
                 for m in re.finditer(b"ispe", d[:1 << 20])]
        return max(sizes, key=lambda s: s[0] * s[1]) if sizes else None
    except (struct.error, IndexError):
        return None
