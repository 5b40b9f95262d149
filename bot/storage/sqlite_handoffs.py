"""The hand-off part of the Store port for :class:`~bot.storage.sqlite.SqliteStore` (bot/handoff.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from bot.storage.handoff_port import Ticket
from bot.storage.sqlite_leases import ProcessLocks


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class SqliteHandoffs:
    """Tickets of queued jobs: kept, taken back when the job starts, claimed from the dead."""

    _processes: ProcessLocks

    def _writing(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError

    async def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def hand_off(self, ticket: Ticket, owner: str) -> None:
        """Keep ``ticket`` as ``owner``'s."""
        async with self._writing() as db:
            await db.execute(
                "INSERT INTO handoffs (id, owner, platform, target, call, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET owner = excluded.owner,"
                " target = excluded.target, call = excluded.call",
                (ticket.id, owner, ticket.platform, ticket.target, ticket.call,
                 _iso(ticket.created_at)))

    async def take_back(self, ticket_id: str, owner: str) -> bool:
        """Forget the ticket if ``owner`` still holds it."""
        async with self._writing() as db:
            cursor = await db.execute("DELETE FROM handoffs WHERE id = ? AND owner = ?",
                                      (ticket_id, owner))
            return bool(cursor.rowcount)

    async def claim_handoffs(self, platform: str, owner: str) -> list[Ticket]:
        """``platform``'s tickets whose owner is gone, now ``owner``'s."""
        rows = await self._rows(
            "SELECT h.*, i.id AS leased FROM handoffs h LEFT JOIN instances i"
            " ON i.id = h.owner AND i.lease_until >= ? WHERE h.platform = ? AND h.owner != ?"
            " ORDER BY h.created_at, h.id", (_iso(datetime.now(UTC)), platform, owner))
        claimed: list[Ticket] = []
        for row in rows:
            # A crash leaves its lease running for a while; its lock file tells at once.
            if row["leased"] is not None and await asyncio.to_thread(
                    self._processes.alive, row["leased"]):
                continue
            async with self._writing() as db:
                cursor = await db.execute("UPDATE handoffs SET owner = ? WHERE id = ? AND owner = ?",
                                          (owner, row["id"], row["owner"]))
            if cursor.rowcount:
                claimed.append(Ticket(row["id"], row["platform"], row["target"], row["call"],
                                      datetime.fromisoformat(row["created_at"])))
        return claimed

    async def drop_handoff(self, ticket_id: str) -> None:
        """Forget a ticket whoever holds it."""
        async with self._writing() as db:
            await db.execute("DELETE FROM handoffs WHERE id = ?", (ticket_id,))
