"""The blob-store port: where image bytes live, by SHA-256 digest (the index is the Store's)."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Protocol

_DIGEST = re.compile(r"[0-9a-f]{64}")
MIB = 1024 * 1024
#: ``[blobs] max_object_mb``'s default: a 4K PNG (~20 MB) many times over.
DEFAULT_MAX_BYTES = 128 * MIB
log = logging.getLogger(__name__)


class BlobTooLarge(Exception):
    """An object over the configured size limit: refused, never read into memory."""

    def __init__(self, digest: str, size: int, limit: int) -> None:
        super().__init__(f"blob {digest[:12]}... is {size} bytes, over the {limit}-byte limit")
        self.size = size
        self.limit = limit


def blob_key(digest: str) -> str:
    """``ab/abcdef...``: the relative path (or object key) of a digest; refuses anything else."""
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"not a SHA-256 hex digest: {digest[:80]!r}")
    return f"{digest[:2]}/{digest}"


def matches(digest: str, data: bytes) -> bool:
    """Whether ``data`` hashes to ``digest`` (call it off the event loop); logs a mismatch."""
    if hashlib.sha256(data).hexdigest() == digest:
        return True
    log.warning("stored image %s... does not match its digest; treated as gone", digest[:12])
    return False


class Blobs(Protocol):
    """Image bytes by digest. Missing is None; unreachable or refusing raises StoreUnavailable.

    Writes are idempotent (the key is the content's hash), so a retried or concurrent put of
    the same digest is harmless; reads return only bytes that hash to their digest (anything
    else is None, as if gone). Every implementation keeps the same ``ab/abcdef...`` layout, so
    a directory copied into a bucket (or back) is served as it was.
    """

    max_bytes: int

    def describe(self) -> str:
        """Where the bytes live, for logs and ``check`` (never a secret)."""
        ...

    async def put(self, digest: str, data: bytes) -> None:
        """Store ``data`` under ``digest`` (BlobTooLarge over ``max_bytes``)."""
        ...

    async def get(self, digest: str) -> bytes | None:
        """The bytes; None when absent or corrupt; BlobTooLarge over ``max_bytes``."""
        ...

    async def delete(self, digests: Sequence[str]) -> None:
        """Remove these objects; absent ones are no error."""
        ...

    async def probe(self) -> None:
        """Raise StoreUnavailable unless the store can be reached and written to."""
        ...

    async def aclose(self) -> None:
        """Release connections (a later call opens them again)."""
        ...
