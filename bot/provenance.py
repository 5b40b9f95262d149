"""Provenance that survives a re-encode: C2PA, XMP and IPTC carried over, or an AI-media marker.

The EU AI Act's Article 50(2) asks generated images to be machine-readably marked from
2026-08-02, and from 2026-12-02 for systems already on the market
(https://www.licentium.io/post/eu-ai-act-article-50-transparency-obligations-2-august-2026).
Originals leave the bot as the model's bytes, untouched. A photo preview or an attachment fitted
under a platform's limit is a new JPEG, which Pillow writes without the original's metadata;
this module copies the original's provenance segments into it: XMP (APP1), IPTC (APP13) and C2PA
manifests (JUMBF in APP11; from a PNG's ``caBX`` chunk they are rewrapped as JPEG XT boxes). A
C2PA manifest's hard binding names the original's bytes, so a validator reports the preview as
changed after signing while still reading who made it; the untouched original stays available.
Where the original has no XMP, or XMP without a digital source type, the IPTC NewsCodes value
``trainedAlgorithmicMedia`` is written (https://www.rubydoc.info/gems/ruby-c2pa/C2PA/DigitalSourceTypes
lists the vocabulary). Written by hand: Pillow reads these segments but cannot copy C2PA or
APP13 into a new JPEG, and no maintained library here does that without a signing key.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["AI_SOURCE_TYPE", "segments", "stamp"]

AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
_IPTC_ID = b"Photoshop 3.0\x00"
_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
#: Largest payload of one JPEG segment (its 2-byte length counts itself).
_SEGMENT_MAX = 65533
#: Provenance larger than this is not copied into a preview (it would crowd out the image).
MAX_CARRIED = 1_000_000

_MARKER_XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    f'<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="{_EXT_NS}" '
    f'Iptc4xmpExt:DigitalSourceType="{AI_SOURCE_TYPE}"/>'
    '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of each segment before the image data of a JPEG."""
    out: list[tuple[int, bytes]] = []
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA or marker == 0xD9:  # start of scan / end of image
            break
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        out.append((marker, data[pos + 4:pos + 2 + length]))
        pos += 2 + length
    return out


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of each chunk of a PNG."""
    out: list[tuple[bytes, bytes]] = []
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        out.append((kind, data[pos + 8:pos + 8 + length]))
        if kind == b"IEND":
            break
        pos += 12 + length
    return out


def _png_xmp(body: bytes) -> bytes | None:
    """The XMP packet of an ``iTXt`` chunk keyed XML:com.adobe.xmp."""
    key, _, rest = body.partition(b"\x00")
    if key != b"XML:com.adobe.xmp" or len(rest) < 2:
        return None
    compressed, text = rest[0], rest[2:]
    _lang, _, text = text.partition(b"\x00")
    _translated, _, text = text.partition(b"\x00")
    try:
        return zlib.decompress(text) if compressed else text
    except zlib.error:
        return None


def _app11(jumbf: bytes) -> list[bytes]:
    """A JUMBF box as JPEG XT APP11 segments (the box header repeats in each continuation)."""
    header, body = jumbf[:8], jumbf[8:]
    room = _SEGMENT_MAX - 8 - 8
    parts = [body[i:i + room] for i in range(0, len(body), room)] or [b""]
    return [_segment(0xEB, b"JP" + struct.pack(">HI", 1, n + 1) + header + part)
            for n, part in enumerate(parts)]


def _marked(xmp: bytes) -> bytes:
    """``xmp`` with a digital source type (the AI marker added where it names none)."""
    if b"DigitalSourceType" in xmp:
        return xmp
    at = xmp.find(b"<rdf:Description")
    if at < 0:
        return _MARKER_XMP.encode()
    at += len(b"<rdf:Description")
    extra = f' xmlns:Iptc4xmpExt="{_EXT_NS}" Iptc4xmpExt:DigitalSourceType="{AI_SOURCE_TYPE}"'
    return xmp[:at] + extra.encode() + xmp[at:]


def segments(original: bytes, mime: str) -> bytes:
    """The JPEG segments that carry ``original``'s provenance, or the AI marker alone."""
    xmp: bytes | None = None
    kept: list[bytes] = []
    if mime == "image/jpeg":
        for marker, payload in _jpeg_segments(original):
            if marker == 0xE1 and payload.startswith(_XMP_ID):
                xmp = payload[len(_XMP_ID):]
            elif (marker == 0xED and payload.startswith(_IPTC_ID)) or (
                    marker == 0xEB and payload.startswith(b"JP")):
                kept.append(_segment(marker, payload))
    elif mime == "image/png":
        for kind, body in _png_chunks(original):
            if kind == b"iTXt" and xmp is None:
                xmp = _png_xmp(body)
            elif kind == b"caBX" and len(body) >= 8:
                kept.extend(_app11(body))
    packet = _marked(xmp) if xmp is not None else _MARKER_XMP.encode()
    out = [_segment(0xE1, _XMP_ID + packet)] if len(packet) <= _SEGMENT_MAX - len(_XMP_ID) else [
        _segment(0xE1, _XMP_ID + _MARKER_XMP.encode())]
    carried = b"".join(kept)
    return b"".join(out) + (carried if len(carried) <= MAX_CARRIED else b"")


def stamp(jpeg: bytes, extra: bytes) -> bytes:
    """``jpeg`` with ``extra`` segments after its JFIF header (or right after SOI)."""
    if not extra or not jpeg.startswith(b"\xff\xd8"):
        return jpeg
    pos = 2
    if jpeg[2:4] == b"\xff\xe0":  # keep APP0 (JFIF) first, as decoders expect
        (length,) = struct.unpack(">H", jpeg[4:6])
        pos = 4 + length
    return jpeg[:pos] + extra + jpeg[pos:]
