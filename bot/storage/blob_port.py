"""The Store port's part for the image blobs' index (the bytes are in bot/blobs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.domain import Turn


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """Index row of a stored image blob."""

    hash: str
    mime: str
    size: int
    width: int
    height: int


class BlobIndex(Protocol):
    """Blob rows, and a result's rows written together."""

    async def put_blob(self, info: BlobInfo, used_at: datetime | None = None) -> None:
        """Index a blob (or touch it when it exists) as used at ``used_at`` (default: now)."""
        ...

    async def add_result(self, blobs: Sequence[BlobInfo], used_at: datetime, turn: Turn,
                         reservation_id: str | None) -> None:
        """Index a turn's blobs (as put_blob), insert it (as add_turn), link the reservation
        that pays for it (as link_reservation, only once the turn is there)."""
        ...

    async def get_blob(self, digest: str) -> BlobInfo | None:
        """A blob's index row."""
        ...

    async def blob_refs(self, digest: str) -> int:
        """How many turns reference a blob."""
        ...

    async def prunable_blobs(self, older_than: datetime) -> list[str]:
        """Blobs not used since ``older_than``."""
        ...

    async def blobs_by_age(self) -> list[BlobInfo]:
        """Every blob, least recently used first."""
        ...

    async def delete_blobs(self, digests: list[str]) -> None:
        """Drop index rows."""
        ...

