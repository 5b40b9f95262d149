"""Quota reads and writes inside one SQLite ``BEGIN IMMEDIATE`` transaction; windows read counters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import aiosqlite

from bot.storage.base import LedgerEntry, Reservation, ReservationState
from bot.storage.sqlite_payments import SqlitePaymentTx
from bot.storage.standing import Standing

#: QuotaTx.standing's reads as one statement (a chat's row only when one is named).
_STANDING = (
    "SELECT (SELECT daily_limit FROM users WHERE key = :actor),"
    " (SELECT monthly_limit FROM users WHERE key = :actor),"
    " (SELECT units FROM counters WHERE scope = 'user_day' AND key = :actor AND period = :day),"
    " (SELECT units FROM counters WHERE scope = 'user_month' AND key = :actor"
    "  AND period = :month),"
    " (SELECT units FROM counters WHERE scope = 'bonus' AND key = :actor AND period = ''),"
    " (SELECT units FROM counters WHERE scope = 'paid' AND key = :actor AND period = ''),"
    " (SELECT units FROM counters WHERE scope = 'chat_day' AND key = :chat AND period = :day),"
    " CASE WHEN :held THEN (SELECT SUM(credits + bonus + paid) FROM reservations"
    "  WHERE actor_key = :actor AND state = 'held') END")


class SqliteQuotaTx(SqlitePaymentTx):
    """The QuotaTx port on an aiosqlite connection already inside a write transaction."""

    def __init__(self, db: aiosqlite.Connection,
                 redact: Callable[[str], str] = lambda text: text) -> None:
        self._db = db
        self._redact = redact  # ledger notes may quote an upstream's error

    async def _row(self, sql: str, params: tuple[object, ...] | dict[str, object]
                   ) -> aiosqlite.Row | None:
        # One trip to the connection's thread, not two (execute, then fetchone): a reservation
        # reads eight counters while it holds the database, each trip a turn of a busy loop.
        rows = list(await self._db.execute_fetchall(sql, params))
        return rows[0] if rows else None

    async def _scalar(self, sql: str, *params: object) -> float:
        row = await self._row(sql, params)
        return float(row[0]) if row and row[0] is not None else 0.0

    async def lock(self, actor_key: str | None, chat_key: str | None, day: str, month: str, *,
                   spend: bool = True) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already holds the whole database."""

    async def _counter(self, scope: str, key: str, period: str, column: str = "units") -> float:
        # The ledger_counts trigger (migration 0006) keeps these rows from every ledger insert.
        return await self._scalar(f"SELECT {column} FROM counters"
                                  " WHERE scope = ? AND key = ? AND period = ?", scope, key, period)

    async def used_credits(self, actor_key: str, *, day: str | None = None,
                           month: str | None = None) -> int:
        """Allowance credits held or spent in a day or a month."""
        if day is not None:
            return int(await self._counter("user_day", actor_key, day))
        return int(await self._counter("user_month", actor_key, month or ""))

    async def chat_used(self, chat_key: str, day: str) -> int:
        """Credits held or spent in a chat on a day (bonus spending included)."""
        return int(await self._counter("chat_day", chat_key, day))

    async def usd_spent(self, day: str) -> float:
        """USD held or spent on a day across everyone: one counter row."""
        return await self._counter("usd_day", "", day, "usd")

    async def bonus(self, actor_key: str) -> int:
        """Bonus credits left."""
        return int(await self._counter("bonus", actor_key, ""))

    async def reserved(self, actor_key: str) -> int:
        """Credits currently held for the actor."""
        return int(await self._scalar(
            "SELECT SUM(credits + bonus + paid) FROM reservations"
            " WHERE actor_key = ? AND state = 'held'",
            actor_key))

    async def limits(self, actor_key: str) -> tuple[int | None, int | None]:
        """Per-user limit overrides."""
        row = await self._row("SELECT daily_limit, monthly_limit FROM users WHERE key = ?",
                              (actor_key,))
        return (row[0], row[1]) if row else (None, None)

    async def standing(self, actor_key: str, day: str, month: str, *,
                       chat_key: str | None = None, reserved: bool = False) -> Standing:
        """One statement, one trip to the connection's thread."""
        row = await self._row(_STANDING, {"actor": actor_key, "day": day, "month": month,
                                          "chat": chat_key, "held": int(reserved)})
        assert row is not None  # scalar subqueries: always one row

        def count(value: object) -> int:
            return int(value) if isinstance(value, int | float) else 0

        return Standing(daily_limit=row[0], monthly_limit=row[1], used_day=count(row[2]),
                        used_month=count(row[3]), bonus=count(row[4]), paid=count(row[5]),
                        chat_day=count(row[6]), reserved=count(row[7]))

    @staticmethod
    def reservation_from(row: aiosqlite.Row) -> Reservation:
        """A Reservation from its row."""
        return Reservation(
            id=row["id"], actor_key=row["actor_key"], chat_key=row["chat_key"],
            credits=row["credits"], bonus=row["bonus"], usd=row["usd"], day=row["day"],
            month=row["month"], state=row["state"],
            created_at=datetime.fromisoformat(row["created_at"]), owner=row["owner"],
            paid=row["paid"], clawback=row["clawback"], turn_id=row["turn_id"],
        )

    async def reservation(self, reservation_id: str) -> Reservation | None:
        """A reservation by id."""
        row = await self._row("SELECT * FROM reservations WHERE id = ?", (reservation_id,))
        return self.reservation_from(row) if row else None

    async def add_reservation(self, reservation: Reservation) -> None:
        """Insert a held reservation."""
        r = reservation
        await self._db.execute(
            "INSERT INTO reservations (id, actor_key, chat_key, credits, bonus, usd, day, month,"
            " state, created_at, owner, paid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.id, r.actor_key, r.chat_key, r.credits, r.bonus, r.usd, r.day, r.month, r.state,
             r.created_at.isoformat(), r.owner, r.paid),
        )

    async def close_reservation(self, reservation_id: str,
                                state: ReservationState) -> Reservation | None:
        """Mark a held reservation settled or refunded; it as it was held, or None if it was not."""
        row = await self._row(
            "UPDATE reservations SET state = ?, closed_at = ? WHERE id = ? AND state = 'held'"
            " RETURNING *", (state, datetime.now(UTC).isoformat(), reservation_id))
        if row is None:
            return None
        return replace(self.reservation_from(row), state="held")

    async def append(self, entry: LedgerEntry) -> None:
        """Append one ledger row."""
        e = entry
        await self._db.execute(
            "INSERT INTO ledger (ts, kind, reservation_id, actor_key, chat_key, day, month,"
            " credits, bonus, usd, model, size, note, paid)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((e.ts or datetime.now(UTC)).isoformat(), e.kind, e.reservation_id, e.actor_key,
             e.chat_key, e.day, e.month, e.credits, e.bonus, e.usd, e.model, e.size,
             self._redact(e.note) if e.note is not None else None, e.paid),
        )
