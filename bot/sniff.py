"""The type of image bytes from their magic numbers: the only MIME label the core keeps."""

from __future__ import annotations

#: What bytes that are not an image we accept are labelled (never rendered by a browser).
OCTET_STREAM = "application/octet-stream"
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})


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
