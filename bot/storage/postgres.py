"""``PostgresStore``: the Store on PostgreSQL through asyncpg, for several processes on one database.

Why asyncpg rather than SQLAlchemy 2 async: the store is hand-written SQL behind a small port
(the SQLite twin is too), so an ORM or a query builder would add a layer and a second driver
underneath for nothing; asyncpg speaks the binary protocol itself, pools connections, and is the
driver SQLAlchemy's own async PostgreSQL dialect runs on (https://magicstack.github.io/asyncpg/
current/usage.html: pools, transactions, ``server_settings``). Selected by ``[store] url``.

Money stays all-or-nothing across processes: see postgres_tx.py (rows locked in one order) and
migrations_pg/0006 (counters kept by a trigger). Leases use the database's clock, so processes on
hosts whose clocks disagree still agree on who is dead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

import asyncpg

from bot.errors import StoreUnavailable
from bot.storage.base import LedgerEntry, Reservation
from bot.storage.postgres_handoffs import PgHandoffs
from bot.storage.postgres_outbox import PgOutbox
from bot.storage.postgres_payments import PgPayments
from bot.storage.postgres_records import PgRecords
from bot.storage.postgres_schema import migrate, schema_version
from bot.storage.postgres_tx import PgQuotaTx, reservation_from
from bot.storage.urls import redact_url

log = logging.getLogger(__name__)
Redact = Callable[[str], str]
_PROBE_KEY = "~readyz"  # the users row the readiness probe upserts in a rolled-back transaction
#: Failures that mean "the database cannot be used now", not "this statement is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
    asyncpg.InsufficientResourcesError, asyncpg.OperatorInterventionError,
    asyncpg.ReadOnlySQLTransactionError, asyncpg.TransactionRollbackError,
    asyncpg.CannotConnectNowError, asyncpg.LockNotAvailableError,
)
_GONE: tuple[type[BaseException], ...] = (RuntimeError, asyncpg.PostgresError, *_UNAVAILABLE)


def _entry(r: asyncpg.Record) -> LedgerEntry:
    return LedgerEntry(kind=r["kind"], actor_key=r["actor_key"], day=r["day"], month=r["month"],
                       credits=r["credits"], bonus=r["bonus"], usd=r["usd"],
                       reservation_id=r["reservation_id"], chat_key=r["chat_key"], model=r["model"],
                       size=r["size"], note=r["note"], ts=r["ts"], paid=r["paid"])


class PostgresStore(PgRecords, PgOutbox, PgHandoffs, PgPayments):
    """The Store on an asyncpg pool; ``schema`` (tests) puts every table in that schema."""

    def __init__(self, url: str, *, pool_size: int = 10, schema: str | None = None,
                 redact: Redact | None = None, timeout: float = 10.0,
                 stall_timeout: float = 10.0) -> None:
        self._url = url
        self.where = redact_url(url)  # what logs and errors may show
        self._pool_size = pool_size
        self._schema = schema
        self._timeout = timeout
        self._stall_ms = str(int(stall_timeout * 1000))
        self._redact: Redact = redact or (lambda text: text)
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The open pool."""
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """A database that is out of reach, full, read-only or shutting down -> StoreUnavailable."""
        try:
            yield
        except _UNAVAILABLE as exc:
            detail = self._redact(f"{type(exc).__name__}: {exc}")
            raise StoreUnavailable(f"PostgreSQL at {self.where}: {detail}") from exc

    async def open(self) -> None:
        """Connect a pool and apply pending migrations (one process at a time)."""
        # A process frozen inside a transaction (SIGSTOP, a stalled host) must not hold the
        # day's spend row for everyone: the server ends its transaction, and a reserve waits
        # for a lock at most this long before failing as "cannot save right now" (both in ms:
        # https://www.postgresql.org/docs/current/runtime-config-client.html).
        settings = {"application_name": "imagine-bot", "lock_timeout": self._stall_ms,
                    "idle_in_transaction_session_timeout": self._stall_ms}
        if self._schema is not None:
            settings["search_path"] = self._schema
        with self._errors():
            self._pool = await asyncpg.create_pool(
                self._url, min_size=1, max_size=self._pool_size, timeout=self._timeout,
                command_timeout=60, server_settings=settings)
        try:
            with self._errors():
                async with self.pool.acquire() as conn:
                    version = await migrate(conn, self.where)
        except BaseException:
            await self.close()
            raise
        log.info("store: PostgreSQL at %s, schema version %d", self.where, version)

    async def close(self) -> None:
        """Close the pool (waiting a little for connections in use)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), self._timeout)
        except _UNAVAILABLE:  # TimeoutError among them
            pool.terminate()

    async def schema_version(self) -> int:
        """The applied migration version."""
        async with self.pool.acquire() as conn:
            return await schema_version(conn)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        with self._errors():
            return await self.pool.fetch(sql, *args, timeout=self._timeout * 3)

    async def _execute(self, sql: str, *args: Any) -> None:
        with self._errors():
            await self.pool.execute(sql, *args, timeout=self._timeout * 3)

    async def _executemany(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        with self._errors():
            await self.pool.executemany(sql, args, timeout=self._timeout * 3)

    @asynccontextmanager
    async def quota_tx(self) -> AsyncIterator[PgQuotaTx]:
        """One READ COMMITTED transaction on one pooled connection; rolled back on any error."""
        with self._errors():
            async with self.pool.acquire(timeout=self._timeout) as conn, conn.transaction():
                yield PgQuotaTx(conn, self._redact)

    def quota_view(self) -> AbstractAsyncContextManager[PgQuotaTx]:
        """Quota reads: a transaction as for any quota work."""
        return self.quota_tx()

    async def writable(self) -> bool:
        """Whether a write would go through now: one upsert, always rolled back."""
        try:
            async with self.pool.acquire(timeout=self._timeout) as conn:
                tx = conn.transaction()
                await tx.start()
                try:
                    await conn.execute(
                        "INSERT INTO users (key, created_at) VALUES ($1, now()) ON CONFLICT (key)"
                        " DO UPDATE SET created_at = EXCLUDED.created_at", _PROBE_KEY,
                        timeout=self._timeout)
                finally:
                    await tx.rollback()
        except _GONE as exc:
            log.warning("store write probe failed: %s", self._redact(f"{type(exc).__name__}: {exc}"))
            return False
        return True

    async def reservation_of(self, turn_id: str) -> Reservation | None:
        """The reservation that pays for ``turn_id``."""
        rows = await self._fetch("SELECT * FROM reservations WHERE turn_id = $1", turn_id)
        return reservation_from(rows[0]) if rows else None

    async def held_reservations(self) -> list[Reservation]:
        """Every reservation still held."""
        rows = await self._fetch("SELECT * FROM reservations WHERE state = 'held' ORDER BY created_at")
        return [reservation_from(r) for r in rows]

    async def register_instance(self, instance_id: str, lease_seconds: float) -> None:
        """Record this process with a lease on the database's clock; forget day-old dead ones."""
        await self._execute("DELETE FROM instances WHERE lease_until < now() - interval '1 day'")
        await self._put_instance(instance_id, lease_seconds)

    async def _put_instance(self, instance_id: str, lease_seconds: float) -> None:
        await self._execute(
            "INSERT INTO instances (id, host, pid, started, lease_until)"
            " VALUES ($1, $2, $3, now(), now() + make_interval(secs => $4))"
            " ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until",
            instance_id, socket.gethostname(), os.getpid(), float(lease_seconds))

    async def renew_instance(self, instance_id: str, lease_seconds: float) -> bool:
        """Extend the lease; False (and taken again) when it had lapsed or was forgotten."""
        rows = await self._fetch(
            "UPDATE instances SET lease_until = now() + make_interval(secs => $2)"
            " WHERE id = $1 AND lease_until >= now() RETURNING id", instance_id, float(lease_seconds))
        if rows:
            return True
        await self._put_instance(instance_id, lease_seconds)
        return False

    async def retire_instance(self, instance_id: str) -> None:
        """Drop this process's row: whatever it still holds is orphaned at once."""
        await self._execute("DELETE FROM instances WHERE id = $1", instance_id)

    async def orphaned_reservations(self) -> list[Reservation]:
        """Held reservations with no owner, an unknown one, or one whose lease lapsed."""
        # A parked result's are not orphans: the outbox sends or refunds them (bot/outbox.py).
        rows = await self._fetch(
            "SELECT r.* FROM reservations r LEFT JOIN instances i"
            " ON i.id = r.owner AND i.lease_until >= now()"
            " WHERE r.state = 'held' AND i.id IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.turn_id = r.turn_id)"
            " ORDER BY r.created_at")
        return [reservation_from(r) for r in rows]

    async def ledger(self, actor_key: str | None = None) -> list[LedgerEntry]:
        """Ledger rows, oldest first."""
        if actor_key is None:
            rows = await self._fetch("SELECT * FROM ledger ORDER BY id")
        else:
            rows = await self._fetch("SELECT * FROM ledger WHERE actor_key = $1 ORDER BY id",
                                     actor_key)
        return [_entry(r) for r in rows]

    async def ledger_since(self, day: str) -> list[LedgerEntry]:
        """Ledger rows of ``day`` and later, oldest first."""
        return [_entry(r) for r in
                await self._fetch("SELECT * FROM ledger WHERE day >= $1 ORDER BY id", day)]

    async def integrity_ok(self) -> bool:
        """Every held reservation has its one reserve row, and the counters match the ledger."""
        rows = await self._fetch(
            "SELECT (SELECT COUNT(*) FROM reservations r WHERE NOT EXISTS (SELECT 1 FROM ledger l"
            " WHERE l.reservation_id = r.id AND l.kind = 'reserve')) AS lost,"
            " (SELECT COUNT(*) FROM (SELECT day, SUM(usd) AS s FROM ledger GROUP BY day) d"
            " LEFT JOIN counters c ON c.scope = 'usd_day' AND c.key = '' AND c.period = d.day"
            " WHERE abs(COALESCE(c.usd, 0) - d.s) > 1e-6) AS drift")
        return bool(rows[0]["lost"] == 0 and rows[0]["drift"] == 0)
