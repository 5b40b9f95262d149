"""The type of image bytes from their magic numbers: the only MIME label the core keeps; and
what other bytes are, for the error that refuses them (bot/images.py identifies with both)."""

from __future__ import annotations

#: What bytes that are not an image we accept are labelled (never rendered by a browser).
OCTET_STREAM = "application/octet-stream"
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})

_MAGIC = ((b"%PDF", "PDF document"), (b"PK\x03\x04", "ZIP archive"), (b"Rar!", "RAR archive"),
          (b"7z\xbc\xaf", "7z archive"), (b"\x1f\x8b", "gzip archive"), (b"II*\x00", "TIFF image"),
          (b"MM\x00*", "TIFF image"), (b"\x1aE\xdf\xa3", "WebM video"), (b"OggS", "Ogg media"),
          (b"ID3", "MP3 audio"), (b"fLaC", "FLAC audio"), (b"8BPS", "Photoshop document"),
          (b"\x00\x00\x01\x00", "ICO icon"), (b"\xff\x0a", "JPEG XL image"),
          (b"\x00\x00\x00\x0cJXL ", "JPEG XL image"), (b"\x7fELF", "program"))


def image_mime(data: bytes) -> str | None:
    """PNG, JPEG, GIF, WebP, HEIC or AVIF as its MIME type, from the leading bytes; else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        brands = {data[8:12]} | {data[i:i + 4] for i in range(16, min(len(data), 64), 4)}
        if brands & {b"avif", b"avis"}:
            return "image/avif"
        if brands & HEIF_BRANDS:
            return "image/heic"
    return None


def sniffed_mime(data: bytes) -> str:
    """The image type the bytes show, or ``application/octet-stream``; never a caller's label."""
    return image_mime(data) or OCTET_STREAM


def what_bytes(data: bytes) -> str:
    """What bytes that are no image we take look like: "BMP image", "PDF document", "text"..."""
    if not data:
        return "empty file"
    if data.startswith(b"RIFF"):
        return {b"AVI ": "AVI video", b"WAVE": "WAV audio"}.get(data[8:12], "RIFF file")
    if data[4:8] == b"ftyp":
        return {b"qt  ": "QuickTime video", b"M4A ": "M4A audio"}.get(data[8:12], "MP4 video")
    if data.startswith(b"BM") and data[6:10] == b"\0\0\0\0":
        return "BMP image"
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return what
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in head:
        return "SVG image"
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "HTML page"
    text = head.decode("utf-8", "replace")
    junk = sum(1 for c in text if c == "\ufffd" or (c < " " and c not in "\t\r\n\f"))
    if junk <= 3 + len(text) // 100:
        return "XML document" if head.startswith(b"<?xml") else "text"
    return "unknown file"
