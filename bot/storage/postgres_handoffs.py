"""The hand-off part of the Store port for :class:`~bot.storage.postgres.PostgresStore` (bot/handoff.py)."""

from __future__ import annotations

from typing import Any

import asyncpg

from bot.storage.handoff_port import Ticket


class PgHandoffs:
    """Tickets of queued jobs: kept, taken back when the job starts, claimed from the dead."""

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        raise NotImplementedError

    async def _execute(self, sql: str, *args: Any) -> None:
        raise NotImplementedError

    async def hand_off(self, ticket: Ticket, owner: str) -> None:
        """Keep ``ticket`` as ``owner``'s."""
        await self._execute(
            "INSERT INTO handoffs (id, owner, platform, target, call, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET"
            " owner = EXCLUDED.owner, target = EXCLUDED.target, call = EXCLUDED.call",
            ticket.id, owner, ticket.platform, ticket.target, ticket.call, ticket.created_at)

    async def take_back(self, ticket_id: str, owner: str) -> bool:
        """Forget the ticket if ``owner`` still holds it."""
        rows = await self._fetch("DELETE FROM handoffs WHERE id = $1 AND owner = $2 RETURNING id",
                                 ticket_id, owner)
        return bool(rows)

    async def claim_handoffs(self, platform: str, owner: str) -> list[Ticket]:
        """``platform``'s tickets whose owner's lease lapsed, now ``owner``'s.

        Each ticket changes hands only from the owner it was read with: two claimers' updates
        meet on its row, and the second, re-checking that row after the first committed, finds
        another owner (a condition on the owner's lease alone would not be re-checked: under
        READ COMMITTED the join to ``instances`` keeps what it found first).
        """
        gone = await self._fetch(
            "SELECT h.id, h.owner FROM handoffs h WHERE h.platform = $1 AND h.owner != $2"
            " AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = h.owner"
            " AND i.lease_until >= now()) ORDER BY h.created_at, h.id", platform, owner)
        claimed: list[Ticket] = []
        for row in gone:
            won = await self._fetch(
                "UPDATE handoffs SET owner = $1 WHERE id = $2 AND owner = $3"
                " RETURNING id, platform, target, call, created_at", owner, row["id"], row["owner"])
            claimed += [Ticket(r["id"], r["platform"], r["target"], r["call"], r["created_at"])
                        for r in won]
        return claimed

    async def drop_handoff(self, ticket_id: str) -> None:
        """Forget a ticket whoever holds it."""
        await self._execute("DELETE FROM handoffs WHERE id = $1", ticket_id)
