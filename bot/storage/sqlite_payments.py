"""Payments on SQLite: the rows money leaves (migration 0007), inside and outside a quota tx."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from bot.storage.base import Payment, PaymentState


def payment_from(row: aiosqlite.Row) -> Payment:
    """A Payment from its row."""
    return Payment(platform=row["platform"], charge_id=row["charge_id"],
                   actor_key=row["actor_key"], pack=row["pack"], credits=row["credits"],
                   stars=row["stars"], usd=row["usd"], state=row["state"], day=row["day"],
                   refund_day=row["refund_day"], removed=row["removed"],
                   consumed=bool(row["consumed"]), note=row["note"],
                   received_at=datetime.fromisoformat(row["received_at"]))


class SqlitePaymentTx:
    """The purchase part of the QuotaTx port (the write transaction holds the whole database)."""

    _db: aiosqlite.Connection

    async def _counter(self, scope: str, key: str, period: str, column: str = "units") -> float:
        raise NotImplementedError

    async def paid(self, actor_key: str) -> int:
        """Purchased credits left."""
        return int(await self._counter("paid", actor_key, ""))

    async def held_paid(self, actor_key: str) -> int:
        """Purchased credits the actor's held jobs hold, not yet marked for taking back."""
        row = await (await self._db.execute(
            "SELECT SUM(paid - clawback) FROM reservations WHERE actor_key = ?"
            " AND state = 'held'", (actor_key,))).fetchone()
        return int(row[0] or 0) if row else 0

    async def mark_clawback(self, actor_key: str, credits: int) -> int:
        """Mark held jobs' purchased credits for taking back, oldest job first; how many."""
        left = credits
        rows = await (await self._db.execute(
            "SELECT id, paid, clawback FROM reservations WHERE actor_key = ? AND state = 'held'"
            " AND paid > clawback ORDER BY created_at", (actor_key,))).fetchall()
        for row in rows:
            if left <= 0:
                break
            take = min(left, row["paid"] - row["clawback"])
            await self._db.execute("UPDATE reservations SET clawback = clawback + ? WHERE id = ?",
                                   (take, row["id"]))
            left -= take
        return credits - max(0, left)

    async def payment(self, platform: str, charge_id: str) -> Payment | None:
        """A payment (``BEGIN IMMEDIATE`` already keeps others out)."""
        row = await (await self._db.execute(
            "SELECT * FROM payments WHERE platform = ? AND charge_id = ?",
            (platform, charge_id))).fetchone()
        return payment_from(row) if row else None

    async def close_payment(self, payment: Payment, state: PaymentState, *,
                            removed: int = 0, refund_day: str | None = None,
                            at: datetime | None = None) -> bool:
        """Move a payment on from the state it has; False when it had moved already."""
        credited = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")
        cursor = await self._db.execute(
            "UPDATE payments SET state = ?, removed = ?, refund_day = ?,"
            " credited_at = CASE WHEN ? = 'credited' THEN ? ELSE credited_at END"
            " WHERE platform = ? AND charge_id = ? AND state = ?",
            (state, removed, refund_day, state, credited, payment.platform, payment.charge_id,
             payment.state))
        return bool(cursor.rowcount)

    async def purchased_since(self, actor_key: str, since: datetime) -> int:
        """Credits of packs credited at or after ``since`` and not refunded."""
        row = await (await self._db.execute(
            "SELECT SUM(credits) FROM payments WHERE actor_key = ? AND state = 'credited'"
            " AND credited_at >= ?",
            (actor_key, since.astimezone(UTC).isoformat(timespec="microseconds")))).fetchone()
        return int(row[0] or 0) if row else 0


class SqlitePayments:
    """The payment part of the Store port for :class:`~bot.storage.sqlite.SqliteStore`."""

    def _writing(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError

    async def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def record_payment(self, payment: Payment) -> Payment:
        """Insert unless the charge id is known; the stored row either way."""
        p = payment
        received = (p.received_at or datetime.now(UTC)).astimezone(UTC)
        async with self._writing() as db:
            await db.execute(
                "INSERT INTO payments (platform, charge_id, actor_key, pack, credits, stars, usd,"
                " state, day, received_at, refund_day, removed, consumed, note)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (platform, charge_id) DO NOTHING",
                (p.platform, p.charge_id, p.actor_key, p.pack, p.credits, p.stars, p.usd, p.state,
                 p.day, received.isoformat(timespec="microseconds"), p.refund_day, p.removed,
                 int(p.consumed), p.note))
            row = await (await db.execute(
                "SELECT * FROM payments WHERE platform = ? AND charge_id = ?",
                (p.platform, p.charge_id))).fetchone()
        assert row is not None
        return payment_from(row)

    async def get_payment(self, platform: str, charge_id: str) -> Payment | None:
        """A payment by its platform's charge id."""
        rows = await self._rows("SELECT * FROM payments WHERE platform = ? AND charge_id = ?",
                                (platform, charge_id))
        return payment_from(rows[0]) if rows else None

    async def payments(self, *, actor_key: str | None = None, since_day: str | None = None,
                       state: PaymentState | None = None) -> list[Payment]:
        """Payments, oldest first (``since_day``: received or refunded on that day or later)."""
        where, params = ["1 = 1"], []
        if actor_key is not None:
            where.append("actor_key = ?")
            params.append(actor_key)
        if since_day is not None:
            where.append("(day >= ? OR refund_day >= ?)")
            params += [since_day, since_day]
        if state is not None:
            where.append("state = ?")
            params.append(state)
        rows = await self._rows(f"SELECT * FROM payments WHERE {' AND '.join(where)}"
                                " ORDER BY received_at", params)
        return [payment_from(r) for r in rows]

    async def mark_consumed(self, platform: str, charge_id: str) -> None:
        """Note that the entitlement behind a payment was consumed."""
        async with self._writing() as db:
            await db.execute("UPDATE payments SET consumed = 1 WHERE platform = ? AND charge_id = ?",
                             (platform, charge_id))
