"""The outbox part of the Store port for :class:`~bot.storage.sqlite.SqliteStore` (bot/outbox.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

import aiosqlite

from bot.storage.base import Parked
from bot.storage.sqlite_leases import ProcessLocks


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class SqliteOutbox:
    """Parked results: kept, forgotten, and claimed from processes that are gone."""

    _processes: ProcessLocks

    def _writing(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError

    async def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def park(self, parked: Parked) -> None:
        """Keep a result for its platform (again: replaced, since when kept); reservations stay held."""
        async with self._writing() as db:
            rows = await db.execute_fetchall(
                "SELECT MIN(created_at) FROM outbox WHERE delivery = ?", (parked.delivery,))
            since = next(iter(rows))[0] or _iso(parked.created_at)  # parked again: the first time
            await db.execute("DELETE FROM outbox WHERE delivery = ?", (parked.delivery,))
            await db.executemany(
                "INSERT OR REPLACE INTO outbox (turn_id, delivery, platform, target, reply,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(turn_id, parked.delivery, parked.platform, parked.target, parked.reply, since)
                 for turn_id in parked.turn_ids])

    async def unpark(self, delivery: str) -> None:
        """The parked result was sent or given up: forget it."""
        async with self._writing() as db:
            await db.execute("DELETE FROM outbox WHERE delivery = ?", (delivery,))

    async def claim_parked(self, platform: str, owner: str) -> list[Parked]:
        """``platform``'s parked results whose reservations' owner is gone, now ``owner``'s.

        A row whose reservation is no longer held (settled or refunded before the row went) is
        forgotten on the way.
        """
        rows = await self._rows(
            "SELECT o.*, r.owner, r.state, i.id AS leased FROM outbox o"
            " LEFT JOIN reservations r ON r.turn_id = o.turn_id"
            " LEFT JOIN instances i ON i.id = r.owner AND i.lease_until >= ?"
            " WHERE o.platform = ? ORDER BY o.created_at, o.delivery, o.turn_id",
            (_iso(datetime.now(UTC)), platform))
        claimed: list[Parked] = []
        for delivery, group in groupby(rows, key=lambda r: r["delivery"]):
            turns = list(group)
            held = [r for r in turns if r["state"] == "held"]
            if not held:
                await self.unpark(delivery)
                continue
            owners = {r["owner"] for r in held}
            gone = [await self._gone(r) for r in held]
            if owner in owners or not all(gone):
                continue  # being sent by a live process (this one, or another)
            before = sorted({r["owner"] or "" for r in held})  # taken only from them
            async with self._writing() as db:
                cursor = await db.execute(
                    "UPDATE reservations SET owner = ? WHERE state = 'held' AND turn_id IN"
                    f" ({', '.join('?' * len(held))}) AND COALESCE(owner, '') IN"
                    f" ({', '.join('?' * len(before))})",
                    (owner, *(r["turn_id"] for r in held), *before))
            if cursor.rowcount:
                first = turns[0]
                claimed.append(Parked(delivery, tuple(r["turn_id"] for r in held), platform,
                                      first["target"], first["reply"],
                                      datetime.fromisoformat(first["created_at"])))
        return claimed

    async def _gone(self, row: aiosqlite.Row) -> bool:
        """The row's reservation owner has no live lease, or its process is gone."""
        if row["leased"] is None:
            return True
        return not await asyncio.to_thread(self._processes.alive, row["leased"])
