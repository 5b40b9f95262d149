"""The outbox part of the Store port for :class:`~bot.storage.postgres.PostgresStore` (bot/outbox.py)."""

from __future__ import annotations

from itertools import groupby
from typing import Any

import asyncpg

from bot.storage.base import Parked


class PgOutbox:
    """Parked results: kept, forgotten, and claimed from processes whose lease lapsed."""

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        raise NotImplementedError

    async def _execute(self, sql: str, *args: Any) -> None:
        raise NotImplementedError

    async def _executemany(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    async def park(self, parked: Parked) -> None:
        """Keep a result for its platform (again: replaced, since when kept); reservations stay held."""
        rows = await self._fetch("SELECT MIN(created_at) AS since FROM outbox WHERE delivery = $1",
                                 parked.delivery)
        since = rows[0]["since"] or parked.created_at  # parked again: since the first time
        await self._execute("DELETE FROM outbox WHERE delivery = $1", parked.delivery)
        await self._executemany(
            "INSERT INTO outbox (turn_id, delivery, platform, target, reply, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (turn_id) DO UPDATE SET"
            " delivery = EXCLUDED.delivery, platform = EXCLUDED.platform,"
            " target = EXCLUDED.target, reply = EXCLUDED.reply, created_at = EXCLUDED.created_at",
            [(turn_id, parked.delivery, parked.platform, parked.target, parked.reply, since)
             for turn_id in parked.turn_ids])

    async def unpark(self, delivery: str) -> None:
        """The parked result was sent or given up: forget it."""
        await self._execute("DELETE FROM outbox WHERE delivery = $1", delivery)

    async def claim_parked(self, platform: str, owner: str) -> list[Parked]:
        """``platform``'s parked results whose reservations' owner is gone, now ``owner``'s.

        A row whose reservation is no longer held (settled or refunded before the row went) is
        forgotten on the way; of two processes claiming at once, the conditional update decides.
        """
        rows = await self._fetch(
            "SELECT o.*, r.owner, r.state, i.id AS leased FROM outbox o"
            " LEFT JOIN reservations r ON r.turn_id = o.turn_id"
            " LEFT JOIN instances i ON i.id = r.owner AND i.lease_until >= now()"
            " WHERE o.platform = $1 ORDER BY o.created_at, o.delivery, o.turn_id", platform)
        claimed: list[Parked] = []
        for delivery, group in groupby(rows, key=lambda r: r["delivery"]):
            turns = list(group)
            held = [r for r in turns if r["state"] == "held"]
            if not held:
                await self.unpark(delivery)
                continue
            if any(r["leased"] is not None for r in held):
                continue  # being sent by a live process (this one, or another)
            ids = [r["turn_id"] for r in held]
            before = sorted({r["owner"] or "" for r in held})  # taken only from them
            won = await self._fetch(
                "UPDATE reservations SET owner = $1 WHERE state = 'held' AND turn_id = ANY($2)"
                " AND COALESCE(owner, '') = ANY($3) RETURNING turn_id", owner, ids, before)
            if won:
                first = turns[0]
                claimed.append(Parked(delivery, tuple(ids), platform, first["target"],
                                      first["reply"], first["created_at"]))
        return claimed
