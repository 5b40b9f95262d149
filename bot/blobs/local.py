"""Image bytes as files under one directory (``ab/abcdef...``): the default, one machine's disk."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from bot.blobs.base import DEFAULT_MAX_BYTES, BlobTooLarge, blob_key, matches
from bot.errors import StoreUnavailable


class LocalBlobs:
    """Files under ``root``; written atomically, every disk call off the event loop."""

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def describe(self) -> str:
        """The directory."""
        return f"local {self.root}"

    def path(self, digest: str) -> Path:
        """The file that holds ``digest``."""
        return self.root / blob_key(digest)

    async def put(self, digest: str, data: bytes) -> None:
        """Write the file once (an existing one already holds these bytes)."""
        if len(data) > self.max_bytes:
            raise BlobTooLarge(digest, len(data), self.max_bytes)
        path = self.path(digest)
        try:
            await asyncio.to_thread(_write_once, path, data)
        except OSError as exc:  # read-only volume, disk full: the user is told, not "oops"
            raise StoreUnavailable(f"image store write failed: {exc}") from exc

    async def get(self, digest: str) -> bytes | None:
        """The file's bytes; None when it is gone or no longer hashes to ``digest``."""
        path = self.path(digest)
        try:
            return await asyncio.to_thread(_read_capped, path, digest, self.max_bytes)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"image store read failed: {exc}") from exc

    async def delete(self, digests: Sequence[str]) -> None:
        """Unlink the files (one thread hop for all of them)."""
        paths = [self.path(d) for d in digests]
        try:
            await asyncio.to_thread(_unlink_all, paths)
        except OSError as exc:
            raise StoreUnavailable(f"image store delete failed: {exc}") from exc

    async def probe(self) -> None:
        """The directory (or, before the first image, its nearest parent) is writable."""
        try:
            await asyncio.to_thread(_writable, self.root)
        except OSError as exc:
            raise StoreUnavailable(f"image directory not writable: {exc}") from exc

    async def aclose(self) -> None:
        """Nothing to release."""


def _write_once(path: Path, data: bytes) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers see the whole file or none
    finally:
        tmp.unlink(missing_ok=True)


def _read_capped(path: Path, digest: str, limit: int) -> bytes | None:
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise BlobTooLarge(digest, size, limit)
        # read(n) allocates n bytes up front: ask for what fstat saw (plus one, in case the
        # file grew meanwhile; then its hash no longer matches), never the 128 MiB limit.
        data = fh.read(size + 1)
    if len(data) > limit:
        raise BlobTooLarge(digest, len(data), limit)
    return data if matches(digest, data) else None


def _unlink_all(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _writable(root: Path) -> None:
    # Nothing is made here (``check`` only looks); the first write makes the directories.
    where = root
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir() or not os.access(where, os.W_OK | os.X_OK):
        raise PermissionError(f"{where} is not a writable directory")
