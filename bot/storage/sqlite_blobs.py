"""The blob index on SQLite, and a result's rows (blobs, turn, reservation link) in one trip."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from bot.domain import Turn
from bot.storage.blob_port import BlobInfo
from bot.storage.recipes import recipe_json

Statement = tuple[str, tuple[Any, ...]]


def turn_insert(turn: Turn, redact: Callable[[str], str]) -> Statement:
    """The INSERT of a turn (a root when its parent is gone); its provider state masked."""
    # The prompt is the user's own text and kept; the provider state carries the model's.
    state = redact(turn.provider_state) if turn.provider_state is not None else None
    return (
        "INSERT INTO turns (id, actor_key, chat_key, parent_id, kind, prompt, model, size,"
        " aspect, input_hashes, output_hashes, provider_state, credits, created_at, recipe)"
        " VALUES (?, ?, ?, (SELECT id FROM turns WHERE id = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (turn.id, turn.actor_key, turn.chat_key, turn.parent_id, turn.kind, turn.prompt,
         turn.model, turn.size, turn.aspect, json.dumps(list(turn.input_hashes)),
         json.dumps(list(turn.output_hashes)), state, turn.credits,
         turn.created_at.isoformat(), recipe_json(turn)))


def _blob_insert(info: BlobInfo, used_at: str) -> Statement:
    return ("INSERT INTO blobs (hash, mime, size, width, height, created_at, last_used_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (hash) DO UPDATE SET last_used_at = excluded.last_used_at",
            (info.hash, info.mime, info.size, info.width, info.height, used_at, used_at))


def _info(r: aiosqlite.Row) -> BlobInfo:
    return BlobInfo(r["hash"], r["mime"], r["size"], r["width"], r["height"])


class SqliteBlobs:
    """The BlobIndex part of the Store port for :class:`~bot.storage.sqlite.SqliteStore`."""

    _redact: Callable[[str], str]

    def _writing(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError

    async def _write(self, sql: str, params: Iterable[Any] = ()) -> None:
        raise NotImplementedError

    async def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def put_blob(self, info: BlobInfo, used_at: datetime | None = None) -> None:
        """Index a blob, or refresh its last use (``used_at``, by the caller's clock)."""
        when = (used_at or datetime.now(UTC)).astimezone(UTC).isoformat()
        await self._write(*_blob_insert(info, when))

    async def add_result(self, blobs: Sequence[BlobInfo], used_at: datetime, turn: Turn,
                         reservation_id: str | None) -> None:
        """The blobs' rows, the turn, the reservation's link: queued together, awaited once.

        aiosqlite runs one statement per trip to its thread, and under a burst each trip is a
        round of a busy event loop while the connection's lock is held (storing a result took
        3 trips and 240-480 ms for the first 50 of a burst of 500). Queued at once, its thread
        runs them back to back in order. Each commits on its own, as the separate calls did; the
        link finds only the turn this call inserted (the same id, actor and moment: a refused
        insert under an id already taken links nothing).
        """
        when = used_at.astimezone(UTC).isoformat()
        statements = [_blob_insert(info, when) for info in blobs]
        statements.append(turn_insert(turn, self._redact))
        if reservation_id is not None:
            statements.append(("UPDATE reservations SET turn_id = ? WHERE id = ? AND EXISTS"
                               " (SELECT 1 FROM turns WHERE id = ? AND actor_key = ?"
                               " AND created_at = ?)", (turn.id, reservation_id, turn.id,
                                                        turn.actor_key,
                                                        turn.created_at.isoformat())))
        async with self._writing() as db:
            done = await asyncio.gather(*(db.execute(sql, params) for sql, params in statements),
                                        return_exceptions=True)
            for outcome in done:
                if isinstance(outcome, BaseException):
                    raise outcome

    async def get_blob(self, digest: str) -> BlobInfo | None:
        """A blob's index row."""
        rows = await self._rows("SELECT * FROM blobs WHERE hash = ?", (digest,))
        return _info(rows[0]) if rows else None

    async def blob_refs(self, digest: str) -> int:
        """How many turns reference a blob (as input or output)."""
        pattern = f'%"{digest}"%'
        rows = await self._rows(
            "SELECT COUNT(*) AS n FROM turns WHERE input_hashes LIKE ? OR output_hashes LIKE ?",
            (pattern, pattern),
        )
        return int(rows[0]["n"])

    async def prunable_blobs(self, older_than: datetime) -> list[str]:
        """Blobs not used since ``older_than``."""
        rows = await self._rows("SELECT hash FROM blobs WHERE last_used_at < ?",
                                (older_than.astimezone(UTC).isoformat(),))
        return [str(r["hash"]) for r in rows]

    async def blobs_by_age(self) -> list[BlobInfo]:
        """Every blob, least recently used first."""
        rows = await self._rows("SELECT * FROM blobs ORDER BY last_used_at")
        return [_info(r) for r in rows]

    async def delete_blobs(self, digests: list[str]) -> None:
        """Drop blob index rows."""
        async with self._writing() as db:
            await db.executemany("DELETE FROM blobs WHERE hash = ?", [(d,) for d in digests])
