"""The image store: bytes in a :class:`~bot.blobs.base.Blobs`, their index in the Store.

The index (type, size, dimensions, last use) decides retention, the size cap and what a turn
still has; the bytes may sit on this machine's disk or in a bucket every process shares.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.blobs.base import Blobs, BlobTooLarge
from bot.domain import ImageData
from bot.errors import StoreUnavailable
from bot.quotas import Clock, utc_now
from bot.storage.base import BlobInfo, Store

log = logging.getLogger(__name__)
_HASH_IN_THREAD = 256 * 1024


class BlobStore:
    """Content-addressed images (SHA-256), their bytes in ``objects``, indexed in the Store."""

    def __init__(self, objects: Blobs, store: Store, *, retention_days: int = 30,
                 cap_bytes: int = 2 << 30, clock: Clock = utc_now) -> None:
        self.objects = objects
        self._store = store
        self._retention = timedelta(days=retention_days)
        self._cap = cap_bytes
        self._clock = clock

    async def put(self, image: ImageData) -> str:
        """Store ``image`` once; return its SHA-256 hex digest."""
        info = await self.write(image)
        await self._store.put_blob(info, used_at=self._clock())
        return info.hash

    async def write(self, image: ImageData) -> BlobInfo:
        """Store ``image``'s bytes once; its index row is the caller's to write (Store.put_blob
        or Store.add_result, as of :meth:`now`)."""
        data = image.data
        if len(data) > _HASH_IN_THREAD:
            digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        else:
            digest = hashlib.sha256(data).hexdigest()
        try:
            await self.objects.put(digest, data)
        except BlobTooLarge as exc:  # over [blobs] max_object_mb: it could never be read back
            raise StoreUnavailable(f"image not stored: {exc}") from exc
        # image.mime was sniffed from these bytes by ImageData, never taken from a label.
        return BlobInfo(digest, image.mime, len(data), image.width, image.height)

    def now(self) -> datetime:
        """The clock blob rows are stamped by."""
        return self._clock()

    async def get(self, digest: str) -> ImageData | None:
        """The image stored under ``digest``; None when it expired or was forgotten."""
        info = await self._store.get_blob(digest)
        if info is None:
            return None
        try:
            data = await self.objects.get(digest)
        except BlobTooLarge as exc:
            log.warning("%s; treated as gone", exc)
            return None
        if data is None:
            return None
        # ImageData sniffs the type from the bytes again, so a label stored by an older
        # version (or tampered with) is never what gets served.
        return ImageData(data=data, mime=info.mime, width=info.width, height=info.height)

    async def get_many(self, digests: Sequence[str]) -> tuple[ImageData, ...] | None:
        """All images for ``digests``, or None when any is gone."""
        found = [await self.get(d) for d in digests]
        if any(item is None for item in found):
            return None
        return tuple(item for item in found if item is not None)

    async def drop(self, digests: Sequence[str]) -> int:
        """Delete the bytes and index rows of ``digests``; returns how many were indexed."""
        unique = list(dict.fromkeys(digests))
        indexed = sum([await self._store.get_blob(d) is not None for d in unique])
        await self._drop(unique)
        return indexed

    async def drop_unreferenced(self, digests: Sequence[str]) -> int:
        """Delete those of ``digests`` that no turn references any more."""
        orphans = [d for d in dict.fromkeys(digests) if await self._store.blob_refs(d) == 0]
        return await self.drop(orphans)

    async def prune(self) -> int:
        """Apply retention (unused for ``retention_days``) and the size cap (least recent first)."""
        expired = await self._store.prunable_blobs(self._clock() - self._retention)
        await self._drop(expired)
        blobs = await self._store.blobs_by_age()
        total = sum(b.size for b in blobs)
        over: list[str] = []
        for blob in blobs:
            if total <= self._cap:
                break
            over.append(blob.hash)
            total -= blob.size
        await self._drop(over)
        return len(expired) + len(over)

    async def _drop(self, digests: Sequence[str]) -> None:
        if not digests:
            return
        # Bytes first: should this stop halfway, the index rows remain and the next prune (or
        # forget) deletes again; rows first would leave bytes nothing knows about.
        await self.objects.delete(digests)
        await self._store.delete_blobs(list(digests))
