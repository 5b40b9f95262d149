"""Quota reads and writes inside one PostgreSQL transaction, with the windows' rows locked first.

Under READ COMMITTED each statement sees what was committed before it started; ``lock`` takes
the row of every window a job touches (creating it if new) with one ``INSERT ... ON CONFLICT DO
UPDATE``, rows in one fixed order, so the reads after it see the latest books and nobody else can
change them until this transaction ends. Concurrent reserves of many processes queue on the same
rows; no two can both see room for the last credit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from bot.storage.base import LedgerEntry, Reservation, ReservationState
from bot.storage.postgres_payments import PgPaymentTx
from bot.storage.standing import Standing, standing_of

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

_LOCK = (
    "INSERT INTO counters (scope, key, period)"
    " SELECT s, k, p FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS w(s, k, p, n)"
    " ORDER BY n"
    # A no-op update: it locks an existing row (waiting for its holder) as the insert locks a new one,
    # and returns the latest committed values, so the reads after it need no round trip.
    " ON CONFLICT (scope, key, period) DO UPDATE SET units = counters.units"
    " RETURNING scope, key, period, units, usd"
)


def reservation_from(row: asyncpg.Record) -> Reservation:
    """A Reservation from its row."""
    return Reservation(
        id=row["id"], actor_key=row["actor_key"], chat_key=row["chat_key"],
        credits=row["credits"], bonus=row["bonus"], usd=row["usd"], day=row["day"],
        month=row["month"], state=row["state"], created_at=row["created_at"], owner=row["owner"],
        paid=row["paid"], clawback=row["clawback"], turn_id=row["turn_id"],
    )


class PgQuotaTx(PgPaymentTx):
    """The QuotaTx port on an asyncpg connection inside a transaction."""

    def __init__(self, conn: Conn,
                 redact: Callable[[str], str] = lambda text: text) -> None:
        self._conn = conn
        self._redact = redact  # ledger notes may quote an upstream's error
        # Rows this transaction locked, as they are: nobody else can change them until it ends.
        self._locked: dict[tuple[str, str, str], tuple[int, float]] = {}

    async def lock(self, actor_key: str | None, chat_key: str | None, day: str, month: str, *,
                   spend: bool = True) -> None:
        """Lock (creating) the counter rows in the order the ledger trigger updates them."""
        rows: list[tuple[str, str, str]] = []
        if actor_key is not None:
            rows += [("user_day", actor_key, day), ("user_month", actor_key, month),
                     ("bonus", actor_key, ""), ("paid", actor_key, "")]
        if chat_key is not None:
            rows.append(("chat_day", chat_key, day))
        if spend:
            rows.append(("usd_day", "", day))
        if rows:
            scopes, keys, periods = (list(col) for col in zip(*rows, strict=True))
            for r in await self._conn.fetch(_LOCK, scopes, keys, periods):
                self._locked[(r["scope"], r["key"], r["period"])] = (r["units"], r["usd"])

    async def _counter(self, scope: str, key: str, period: str, column: str = "units") -> float:
        held = self._locked.get((scope, key, period))
        if held is not None:
            return float(held[0] if column == "units" else held[1])
        value = await self._conn.fetchval(
            f"SELECT {column} FROM counters WHERE scope = $1 AND key = $2 AND period = $3",
            scope, key, period)
        return float(value or 0)

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
        value = await self._conn.fetchval(
            "SELECT SUM(credits + bonus + paid) FROM reservations"
            " WHERE actor_key = $1 AND state = 'held'",
            actor_key)
        return int(value or 0)

    async def limits(self, actor_key: str) -> tuple[int | None, int | None]:
        """Per-user limit overrides."""
        row = await self._conn.fetchrow(
            "SELECT daily_limit, monthly_limit FROM users WHERE key = $1", actor_key)
        return (row["daily_limit"], row["monthly_limit"]) if row else (None, None)

    async def standing(self, actor_key: str, day: str, month: str, *,
                       chat_key: str | None = None, reserved: bool = False) -> Standing:
        """The single reads (the rows ``lock`` took cost no trip)."""
        return await standing_of(self, actor_key, day, month, chat_key=chat_key,
                                 reserved=reserved)

    async def reservation(self, reservation_id: str) -> Reservation | None:
        """A reservation by id."""
        row = await self._conn.fetchrow("SELECT * FROM reservations WHERE id = $1", reservation_id)
        return reservation_from(row) if row else None

    async def add_reservation(self, reservation: Reservation) -> None:
        """Insert a held reservation."""
        r = reservation
        await self._conn.execute(
            "INSERT INTO reservations (id, actor_key, chat_key, credits, bonus, usd, day, month,"
            " state, created_at, owner, paid)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            r.id, r.actor_key, r.chat_key, r.credits, r.bonus, r.usd, r.day, r.month, r.state,
            r.created_at, r.owner, r.paid)

    async def close_reservation(self, reservation_id: str,
                                state: ReservationState) -> Reservation | None:
        """Close a held reservation; it as it was held, or None when another closer won."""
        # A second closer waits for the first's row lock, then finds state != 'held': no row.
        row = await self._conn.fetchrow(
            "UPDATE reservations SET state = $1, closed_at = now()"
            " WHERE id = $2 AND state = 'held' RETURNING *", state, reservation_id)
        if row is None:
            return None
        return replace(reservation_from(row), state="held")

    async def append(self, entry: LedgerEntry) -> None:
        """Append one ledger row (the ledger_counts trigger moves the counters)."""
        e = entry
        self._locked.clear()  # the trigger changes them: read them again if asked
        await self._conn.execute(
            "INSERT INTO ledger (ts, kind, reservation_id, actor_key, chat_key, day, month,"
            " credits, bonus, usd, model, size, note, paid)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            e.ts or datetime.now(UTC), e.kind, e.reservation_id, e.actor_key, e.chat_key, e.day,
            e.month, e.credits, e.bonus, e.usd, e.model, e.size,
            self._redact(e.note) if e.note is not None else None, e.paid)
