"""Payments on PostgreSQL (migrations_pg/0007): inside a quota transaction, and on the pool."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from bot.storage.base import Payment, PaymentState

if TYPE_CHECKING:
    from bot.storage.postgres_tx import Conn


def payment_from(row: asyncpg.Record) -> Payment:
    """A Payment from its row."""
    return Payment(platform=row["platform"], charge_id=row["charge_id"],
                   actor_key=row["actor_key"], pack=row["pack"], credits=row["credits"],
                   stars=row["stars"], usd=row["usd"], state=row["state"], day=row["day"],
                   refund_day=row["refund_day"], removed=row["removed"],
                   consumed=row["consumed"], note=row["note"], received_at=row["received_at"])


class PgPaymentTx:
    """The purchase part of the QuotaTx port; ``lock`` has taken the actor's counter rows."""

    _conn: Conn

    async def _counter(self, scope: str, key: str, period: str, column: str = "units") -> float:
        raise NotImplementedError

    async def paid(self, actor_key: str) -> int:
        """Purchased credits left."""
        return int(await self._counter("paid", actor_key, ""))

    async def held_paid(self, actor_key: str) -> int:
        """Lock the actor's held jobs; the purchased credits they hold, not yet marked."""
        rows = await self._conn.fetch(
            "SELECT paid - clawback AS free FROM reservations WHERE actor_key = $1"
            " AND state = 'held' ORDER BY id FOR UPDATE", actor_key)
        return sum(int(r["free"]) for r in rows)

    async def mark_clawback(self, actor_key: str, credits: int) -> int:
        """Mark held jobs' purchased credits for taking back, oldest job first; how many."""
        left = credits
        # FOR UPDATE: a job closing meanwhile waits, and sees the mark when it goes on.
        rows = await self._conn.fetch(
            "SELECT id, paid, clawback FROM reservations WHERE actor_key = $1 AND state = 'held'"
            " AND paid > clawback ORDER BY created_at FOR UPDATE", actor_key)
        for row in rows:
            if left <= 0:
                break
            take = min(left, row["paid"] - row["clawback"])
            await self._conn.execute(
                "UPDATE reservations SET clawback = clawback + $1 WHERE id = $2", take, row["id"])
            left -= take
        return credits - max(0, left)

    async def payment(self, platform: str, charge_id: str) -> Payment | None:
        """A payment, its row locked until the transaction ends."""
        row = await self._conn.fetchrow(
            "SELECT * FROM payments WHERE platform = $1 AND charge_id = $2 FOR UPDATE",
            platform, charge_id)
        return payment_from(row) if row else None

    async def close_payment(self, payment: Payment, state: PaymentState, *,
                            removed: int = 0, refund_day: str | None = None,
                            at: datetime | None = None) -> bool:
        """Move a payment on from the state it has; False when it had moved already."""
        row = await self._conn.fetchrow(
            "UPDATE payments SET state = $1, removed = $2, refund_day = $3,"
            " credited_at = CASE WHEN $1 = 'credited' THEN $4 ELSE credited_at END"
            " WHERE platform = $5 AND charge_id = $6 AND state = $7 RETURNING charge_id",
            state, removed, refund_day, at or datetime.now(UTC), payment.platform,
            payment.charge_id, payment.state)
        return row is not None

    async def purchased_since(self, actor_key: str, since: datetime) -> int:
        """Credits of packs credited at or after ``since`` and not refunded."""
        value = await self._conn.fetchval(
            "SELECT SUM(credits) FROM payments WHERE actor_key = $1 AND state = 'credited'"
            " AND credited_at >= $2", actor_key, since)
        return int(value or 0)


class PgPayments:
    """The payment part of the Store port for :class:`~bot.storage.postgres.PostgresStore`."""

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        raise NotImplementedError

    async def _execute(self, sql: str, *args: Any) -> None:
        raise NotImplementedError

    async def record_payment(self, payment: Payment) -> Payment:
        """Insert unless the charge id is known; the stored row either way."""
        p = payment
        rows = await self._fetch(
            "WITH new AS (INSERT INTO payments (platform, charge_id, actor_key, pack, credits,"
            " stars, usd, state, day, received_at, refund_day, removed, consumed, note)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            " ON CONFLICT (platform, charge_id) DO NOTHING RETURNING *)"
            " SELECT * FROM new UNION ALL SELECT * FROM payments"
            " WHERE platform = $1 AND charge_id = $2 AND NOT EXISTS (SELECT 1 FROM new)",
            p.platform, p.charge_id, p.actor_key, p.pack, p.credits, p.stars, p.usd, p.state,
            p.day, p.received_at or datetime.now(UTC), p.refund_day, p.removed, p.consumed, p.note)
        return payment_from(rows[0])

    async def get_payment(self, platform: str, charge_id: str) -> Payment | None:
        """A payment by its platform's charge id."""
        rows = await self._fetch("SELECT * FROM payments WHERE platform = $1 AND charge_id = $2",
                                 platform, charge_id)
        return payment_from(rows[0]) if rows else None

    async def payments(self, *, actor_key: str | None = None, since_day: str | None = None,
                       state: PaymentState | None = None) -> list[Payment]:
        """Payments, oldest first (``since_day``: received or refunded on that day or later)."""
        rows = await self._fetch(
            "SELECT * FROM payments WHERE ($1::text IS NULL OR actor_key = $1)"
            " AND ($2::text IS NULL OR day >= $2 OR refund_day >= $2)"
            " AND ($3::text IS NULL OR state = $3) ORDER BY received_at",
            actor_key, since_day, state)
        return [payment_from(r) for r in rows]

    async def mark_consumed(self, platform: str, charge_id: str) -> None:
        """Note that the entitlement behind a payment was consumed."""
        await self._execute("UPDATE payments SET consumed = TRUE"
                            " WHERE platform = $1 AND charge_id = $2", platform, charge_id)
