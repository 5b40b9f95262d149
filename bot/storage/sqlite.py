"""``SqliteStore``: the Store on aiosqlite, in WAL mode, with numbered SQL migrations."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from bot.domain import MessageRef, Turn, UserSettings
from bot.errors import StoreUnavailable
from bot.storage.base import LedgerEntry, Reservation, ReservationState, UserRecord
from bot.storage.sqlite_blobs import SqliteBlobs, turn_insert
from bot.storage.sqlite_gallery import SqliteGallery
from bot.storage.sqlite_gallery import turn_row as _turn
from bot.storage.sqlite_handoffs import SqliteHandoffs
from bot.storage.sqlite_leases import ProcessLocks, SqliteLeases
from bot.storage.sqlite_outbox import SqliteOutbox
from bot.storage.sqlite_payments import SqlitePayments
from bot.storage.sqlite_schema import _statements, migrate, migrations
from bot.storage.sqlite_tx import SqliteQuotaTx

log = logging.getLogger(__name__)
Redact = Callable[[str], str]
#: The users row the readiness probe upserts inside a transaction it always rolls back.
_PROBE_KEY = "~readyz"


def _now() -> str:
    return datetime.now(UTC).isoformat()


@contextmanager
def _write_errors() -> Iterator[None]:
    """A write SQLite refuses (read-only file or volume, disk full, I/O error) -> StoreUnavailable."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"database write failed: {exc}") from exc


def _entry(r: aiosqlite.Row) -> LedgerEntry:
    return LedgerEntry(kind=r["kind"], actor_key=r["actor_key"], day=r["day"], month=r["month"],
                       credits=r["credits"], bonus=r["bonus"], usd=r["usd"],
                       reservation_id=r["reservation_id"], chat_key=r["chat_key"], model=r["model"],
                       size=r["size"], note=r["note"], ts=datetime.fromisoformat(r["ts"]),
                       paid=r["paid"])


class SqliteStore(SqliteLeases, SqliteOutbox, SqliteHandoffs, SqlitePayments, SqliteGallery,
                  SqliteBlobs):
    """The Store on one aiosqlite connection; a lock serialises transactions in this process."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 10_000,
                 redact: Redact | None = None) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        # Every free text that comes from an upstream (provider state with the model's words,
        # ledger notes with error details) is masked here, the one door into the database.
        self._redact: Redact = redact or (lambda text: text)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._processes = ProcessLocks(Path(f"{path}-instances"))

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection."""
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        """Connect, enable WAL and foreign keys, apply pending migrations."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        await self._db.execute("PRAGMA journal_mode = WAL")
        await self._db.execute("PRAGMA synchronous = NORMAL")
        await self._db.execute("PRAGMA foreign_keys = ON")
        try:
            await self._migrate()
        except BaseException:
            await self.close()  # a refused database leaves no connection (thread) behind
            raise

    async def _migrate(self) -> None:
        async with self._lock:
            await migrate(self.db, self.path)

    async def close(self) -> None:
        """Checkpoint and disconnect."""
        await asyncio.to_thread(self._processes.close)
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def schema_version(self) -> int:
        """The applied migration version."""
        row = await (await self.db.execute("PRAGMA user_version")).fetchone()
        return int(row[0]) if row else 0

    @asynccontextmanager
    async def quota_tx(self) -> AsyncIterator[SqliteQuotaTx]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        async with self._lock:
            with _write_errors():
                await self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield SqliteQuotaTx(self.db, self._redact)
                    await self.db.execute("COMMIT")
                except BaseException:
                    if self.db.in_transaction:  # also after a failed COMMIT (never left open)
                        await self.db.execute("ROLLBACK")
                    raise

    @asynccontextmanager
    async def quota_view(self) -> AsyncIterator[SqliteQuotaTx]:
        """Reads without BEGIN and COMMIT (two trips fewer): each statement sees one state (WAL)."""
        async with self._lock:  # never inside another task's transaction on this connection
            yield SqliteQuotaTx(self.db, self._redact)

    async def writable(self) -> bool:
        """Whether a write would go through now: one upsert, always rolled back (writes nothing)."""
        # BEGIN IMMEDIATE alone succeeds on a file opened read-only (WAL); a write statement
        # fails there with "attempt to write a readonly database", so the probe makes one.
        try:
            async with self._lock:
                await self.db.execute("BEGIN IMMEDIATE")
                try:
                    await self.db.execute(
                        "INSERT INTO users (key, created_at) VALUES (?, ?) ON CONFLICT (key)"
                        " DO UPDATE SET created_at = excluded.created_at", (_PROBE_KEY, _now()))
                finally:
                    if self.db.in_transaction:
                        await self.db.execute("ROLLBACK")
        except (sqlite3.Error, RuntimeError) as exc:  # RuntimeError: the store is closed
            log.warning("store write probe failed: %s", exc)
            return False
        return True

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection under the lock, with refused writes raised as StoreUnavailable."""
        async with self._lock:
            with _write_errors():
                yield self.db

    async def _write(self, sql: str, params: Iterable[Any] = ()) -> None:
        async with self._writing() as db:
            await db.execute(sql, tuple(params))

    async def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self._lock:
            return list(await self.db.execute_fetchall(sql, tuple(params)))

    async def reservation_of(self, turn_id: str) -> Reservation | None:
        """The reservation that pays for ``turn_id``."""
        rows = await self._rows("SELECT * FROM reservations WHERE turn_id = ?", (turn_id,))
        return SqliteQuotaTx.reservation_from(rows[0]) if rows else None

    async def held_reservations(self) -> list[Reservation]:
        """Every reservation still held."""
        rows = await self._rows("SELECT * FROM reservations WHERE state = 'held'")
        return [SqliteQuotaTx.reservation_from(r) for r in rows]

    async def ledger(self, actor_key: str | None = None) -> list[LedgerEntry]:
        """Ledger rows, oldest first."""
        if actor_key is None:
            rows = await self._rows("SELECT * FROM ledger ORDER BY id")
        else:
            rows = await self._rows("SELECT * FROM ledger WHERE actor_key = ? ORDER BY id",
                                    (actor_key,))
        return [_entry(r) for r in rows]

    async def ledger_since(self, day: str) -> list[LedgerEntry]:
        """Ledger rows of ``day`` and later, oldest first."""
        rows = await self._rows("SELECT * FROM ledger WHERE day >= ? ORDER BY id", (day,))
        return [_entry(r) for r in rows]

    async def recent_turns(self, limit: int, actor_key: str | None = None) -> list[Turn]:
        """The newest ``limit`` turns, oldest first."""
        if actor_key is None:
            rows = await self._rows("SELECT * FROM turns ORDER BY created_at DESC LIMIT ?", (limit,))
        else:
            rows = await self._rows("SELECT * FROM turns WHERE actor_key = ?"
                                    " ORDER BY created_at DESC LIMIT ?", (actor_key, limit))
        return [_turn(r) for r in reversed(rows)]

    async def get_user(self, key: str) -> UserRecord:
        """A user's record, defaults when unknown."""
        rows = await self._rows("SELECT * FROM users WHERE key = ?", (key,))
        if not rows:
            return UserRecord(key=key, settings=UserSettings())
        r = rows[0]
        return UserRecord(
            key=key,
            settings=UserSettings(model=r["model"], size=r["size"], aspect=r["aspect"],
                                  locale=r["locale"], search=r["search"], n=r["n"],
                                  style=r["style"]),
            banned=bool(r["banned"]), ban_notified=bool(r["ban_notified"]),
            daily_limit=r["daily_limit"], monthly_limit=r["monthly_limit"],
        )

    async def _ensure_user(self, key: str) -> None:
        await self.db.execute("INSERT OR IGNORE INTO users (key, created_at) VALUES (?, ?)",
                              (key, _now()))

    async def save_user_settings(self, key: str, settings: UserSettings) -> None:
        """Store a user's defaults."""
        async with self._writing():
            await self._ensure_user(key)
            await self.db.execute(
                "UPDATE users SET model = ?, size = ?, aspect = ?, locale = ?, search = ?, n = ?,"
                " style = ? WHERE key = ?",
                (settings.model, settings.size, settings.aspect, settings.locale,
                 settings.search, settings.n, settings.style, key),
            )

    async def group_settings(self, key: str) -> str | None:
        """A group's /config settings as JSON (bot.groups), None when never set."""
        rows = await self._rows("SELECT settings FROM chats WHERE key = ?", (key,))
        return rows[0]["settings"] if rows else None

    async def save_group_settings(self, key: str, data: str, *, by: str) -> None:
        """Store a group's /config settings, and who set them."""
        async with self._writing():
            await self.db.execute(
                "INSERT INTO chats (key, settings, settings_by, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET settings = excluded.settings, "
                "settings_by = excluded.settings_by", (key, data, by, _now()))

    async def all_group_settings(self) -> list[tuple[str, str, str | None]]:
        """Every configured group: (key, settings JSON, set by), for the operator view."""
        rows = await self._rows("SELECT key, settings, settings_by FROM chats "
                                "WHERE settings IS NOT NULL ORDER BY key")
        return [(r["key"], r["settings"], r["settings_by"]) for r in rows]

    async def note_chat(self, chat_key: str, group_key: str) -> None:
        """Remember that ``chat_key`` (a Discord channel) belongs to ``group_key`` (its server)."""
        async with self._writing():
            await self.db.execute(
                "INSERT INTO chats (key, group_key, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET group_key = excluded.group_key",
                (chat_key, group_key, _now()))

    async def member_used(self, actor_key: str, group_key: str, day: str) -> int:
        """Credits a member held or spent in a group (any of its chats) on a day."""
        rows = await self._rows(
            "SELECT SUM(credits) - SUM(bonus) - SUM(paid) AS used FROM ledger "
            "WHERE actor_key = ? AND day = ? AND kind IN ('reserve', 'settle', 'refund')"
            " AND (chat_key = ? OR chat_key IN "
            "(SELECT key FROM chats WHERE group_key = ?))", (actor_key, day, group_key, group_key))
        return int(rows[0]["used"] or 0) if rows else 0

    async def set_user_flags(self, key: str, *, banned: bool | None = None,
                             ban_notified: bool | None = None, daily_limit: int | None = None,
                             monthly_limit: int | None = None) -> None:
        """Update ban state or limit overrides."""
        fields = {"banned": banned, "ban_notified": ban_notified, "daily_limit": daily_limit,
                  "monthly_limit": monthly_limit}
        updates = {k: (int(v) if isinstance(v, bool) else v) for k, v in fields.items()
                   if v is not None}
        if not updates:
            return
        assignments = ", ".join(f"{k} = ?" for k in updates)
        async with self._writing():
            await self._ensure_user(key)
            await self.db.execute(f"UPDATE users SET {assignments} WHERE key = ?",
                                  (*updates.values(), key))

    async def add_turn(self, turn: Turn) -> None:
        """Insert a turn (a root when its parent was deleted meanwhile); provider state masked."""
        await self._write(*turn_insert(turn, self._redact))

    async def get_turn(self, turn_id: str) -> Turn | None:
        """A turn by id."""
        rows = await self._rows("SELECT * FROM turns WHERE id = ?", (turn_id,))
        return _turn(rows[0]) if rows else None

    async def delete_turn(self, turn_id: str) -> None:
        """Delete a turn; bindings cascade, children become roots."""
        await self._write("DELETE FROM turns WHERE id = ?", (turn_id,))

    async def turns_of(self, actor_key: str) -> list[Turn]:
        """Every turn of an actor, oldest first."""
        rows = await self._rows("SELECT * FROM turns WHERE actor_key = ? ORDER BY created_at",
                                (actor_key,))
        return [_turn(r) for r in rows]

    async def bind(self, turn_id: str, messages: list[MessageRef]) -> None:
        """Map platform messages to a turn (re-bound ones move); nothing when the turn is gone."""
        async with self._writing() as db:
            await db.executemany(
                "INSERT OR REPLACE INTO bindings (platform, chat_id, message_id, turn_id)"
                " SELECT ?, ?, ?, id FROM turns WHERE id = ?",
                [(m.platform, m.chat_id, m.message_id, turn_id) for m in messages],
            )

    async def bound_turn(self, message: MessageRef) -> str | None:
        """The turn a platform message shows."""
        rows = await self._rows(
            "SELECT turn_id FROM bindings WHERE platform = ? AND chat_id = ? AND message_id = ?",
            (message.platform, message.chat_id, message.message_id),
        )
        return str(rows[0]["turn_id"]) if rows else None

    async def bindings_of(self, turn_id: str) -> list[MessageRef]:
        """Platform messages bound to a turn."""
        rows = await self._rows("SELECT * FROM bindings WHERE turn_id = ?", (turn_id,))
        return [MessageRef(r["platform"], r["chat_id"], r["message_id"]) for r in rows]

    async def stats(self, day: str) -> dict[str, float]:
        """Jobs settled, credits, USD and distinct users on a day."""
        rows = await self._rows(
            "SELECT COUNT(*) AS jobs, COALESCE(SUM(credits + bonus + paid), 0) AS credits,"
            " COALESCE(SUM(usd), 0) AS usd, COUNT(DISTINCT actor_key) AS users"
            " FROM reservations WHERE day = ? AND state = 'settled'", (day,),
        )
        r = rows[0]
        return {"jobs": r["jobs"], "credits": r["credits"], "usd": round(r["usd"], 4),
                "users": r["users"]}

    async def integrity_ok(self) -> bool:
        """``PRAGMA integrity_check`` says ok."""
        rows = await self._rows("PRAGMA integrity_check")
        return bool(rows) and rows[0][0] == "ok"


__all__ = ["ReservationState", "SqliteStore", "_statements", "migrations"]
