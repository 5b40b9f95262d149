"""The Store on both engines (SQLite on a file, PostgreSQL in a fresh schema): migrations, refusal
of newer databases, the append-only ledger, counters kept from it, rollbacks, turns and users;
SQLite's WAL settings and PostgreSQL's URL handling on their own."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from bot.config import Settings, load_settings
from bot.domain import MessageRef, Turn, UserSettings
from bot.errors import ConfigError, StoreUnavailable
from bot.storage.base import LedgerEntry
from bot.storage.postgres import PostgresStore
from bot.storage.postgres_schema import pg_migrations
from bot.storage.sqlite import SqliteStore, _statements, migrations
from bot.storage.urls import redact_url, url_secrets
from tests import store_engines as engines
from tests.conftest import StoreFactory
from tests.store_engines import AnyStore, execute, fetch

TABLES = {"users", "chats", "ledger", "reservations", "turns", "bindings", "blobs", "counters",
          "instances"}
LATEST = migrations()[-1][0]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "db" / "imagine.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection to look at the file from outside the store."""
    return sqlite3.connect(path)


def user_version(path: Path) -> int:
    with raw(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


async def tables(store: AnyStore) -> set[str]:
    if isinstance(store, SqliteStore):
        rows = await fetch(store, "SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = await fetch(store, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return engines.tables_of(rows) - {"sqlite_sequence", "schema_version"}


# ----- migrations -----------------------------------------------------------------------------


def test_migrations_are_numbered_from_one() -> None:
    versions = [v for v, _ in migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert all(sql.strip() for _, sql in migrations())


def test_both_dialects_have_the_same_migrations() -> None:
    """The same number is the same change in migrations/ (SQLite) and migrations_pg/."""
    assert [v for v, _ in pg_migrations()] == [v for v, _ in migrations()]
    assert all(sql.strip() for _, sql in pg_migrations())


async def test_migrations_up_from_empty(store: AnyStore) -> None:
    assert await tables(store) >= TABLES
    assert await store.schema_version() == LATEST
    if isinstance(store, SqliteStore):
        assert store.path.exists()  # created with its parent directory
        assert user_version(store.path) == LATEST


async def test_reopening_is_idempotent(store_factory: StoreFactory) -> None:
    first = store_factory()
    await first.open()
    await first.save_user_settings("telegram:1", UserSettings(model="nano-banana-pro", size="2K"))
    await first.close()
    for _ in range(2):
        again = store_factory()
        await again.open()
        assert await again.schema_version() == LATEST
        record = await again.get_user("telegram:1")
        assert record.settings == UserSettings(model="nano-banana-pro", size="2K")
        assert await tables(again) >= TABLES
        await again.close()


async def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "imagine.sqlite3"
    with raw(path) as db:
        db.execute(f"PRAGMA user_version = {LATEST + 5}")
    store = SqliteStore(path)
    with pytest.raises(ConfigError) as info:
        await store.open()
    message = str(info.value)
    assert str(path) in message
    assert f"schema version {LATEST + 5}" in message
    assert f"({LATEST})" in message and "upgrade imagine-bot" in message
    # Refused without touching it, and without leaving a connection (thread) behind.
    assert user_version(path) == LATEST + 5
    with raw(path) as db:
        assert not db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    with pytest.raises(RuntimeError, match="not open"):
        _ = store.db
    await store.close()


async def test_newer_postgres_schema_is_refused(pg_database: str, pg_schema: str) -> None:
    await engines.admin(pg_database,
                        f'CREATE TABLE "{pg_schema}".schema_version (version INTEGER PRIMARY KEY,'
                        " applied_at TIMESTAMPTZ NOT NULL)",
                        f'INSERT INTO "{pg_schema}".schema_version VALUES ({LATEST + 5}, now())')
    store = PostgresStore(pg_database, schema=pg_schema)
    with pytest.raises(ConfigError) as info:
        await store.open()
    message = str(info.value)
    assert f"schema version {LATEST + 5}" in message and f"({LATEST})" in message
    with pytest.raises(RuntimeError, match="not open"):  # no pool left behind
        _ = store.pool
    conn = await asyncpg.connect(pg_database)  # the schema was left as it was: no tables made
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", pg_schema)
        assert [r[0] for r in rows] == ["schema_version"]
    finally:
        await conn.close()


# ----- the ledger and the counters kept from it ----------------------------------------------


async def test_ledger_is_append_only(store: AnyStore) -> None:
    async with store.quota_tx() as tx:
        await tx.append(LedgerEntry(kind="grant", actor_key="telegram:1", day="2024-05-01",
                                    month="2024-05", bonus=10))
    with pytest.raises(engines.REFUSED_ERRORS, match="append-only"):
        await execute(store, "UPDATE ledger SET bonus = 1000")
    with pytest.raises(engines.REFUSED_ERRORS, match="append-only"):
        await execute(store, "DELETE FROM ledger")
    if isinstance(store, PostgresStore):
        with pytest.raises(engines.REFUSED_ERRORS, match="append-only"):
            await execute(store, "TRUNCATE ledger")
    entries = await store.ledger("telegram:1")
    assert [(e.kind, e.bonus) for e in entries] == [("grant", 10)]
    if isinstance(store, SqliteStore):  # the triggers hold for any client, not just ours
        with raw(store.path) as db, pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM ledger")


async def test_ledger_kind_is_checked(store: AnyStore) -> None:
    with pytest.raises(engines.INTEGRITY_ERRORS):
        async with store.quota_tx() as tx:
            await tx.append(LedgerEntry(kind="gift", actor_key="telegram:1",  # type: ignore[arg-type]
                                        day="2024-05-01", month="2024-05"))
    assert await store.ledger() == []  # rolled back


async def test_counters_follow_every_ledger_row(store: AnyStore) -> None:
    """The windows read counters; the database keeps them equal to sums over the ledger."""
    rows = [
        LedgerEntry(kind="grant", actor_key="telegram:1", day="2024-05-01", month="2024-05",
                    bonus=7),
        LedgerEntry(kind="reserve", actor_key="telegram:1", chat_key="telegram:-5",
                    day="2024-05-01", month="2024-05", credits=3, bonus=-2, usd=0.05),
        LedgerEntry(kind="reserve", actor_key="telegram:1", day="2024-05-02", month="2024-05",
                    credits=4, usd=0.04),
        LedgerEntry(kind="refund", actor_key="telegram:1", chat_key="telegram:-5",
                    day="2024-05-01", month="2024-05", credits=-3, bonus=2, usd=-0.05),
        LedgerEntry(kind="reserve", actor_key="discord:2", chat_key="telegram:-5",
                    day="2024-05-01", month="2024-05", credits=1, usd=0.01),
    ]
    for row in rows:
        async with store.quota_tx() as tx:
            await tx.append(row)
    async with store.quota_tx() as tx:
        assert await tx.used_credits("telegram:1", day="2024-05-01") == 0
        assert await tx.used_credits("telegram:1", day="2024-05-02") == 4
        assert await tx.used_credits("telegram:1", month="2024-05") == 4
        assert await tx.bonus("telegram:1") == 7
        assert await tx.chat_used("telegram:-5", "2024-05-01") == 1
        assert await tx.usd_spent("2024-05-01") == pytest.approx(0.01)
        assert await tx.usd_spent("2024-05-02") == pytest.approx(0.04)
        assert await tx.usd_spent("2024-05-03") == 0
    # The global cap reads one row per day, not the day's ledger.
    spend = await fetch(store, "SELECT period, usd FROM counters WHERE scope = 'usd_day'"
                               " ORDER BY period")
    assert [(p, round(u, 9)) for p, u in spend] == [("2024-05-01", 0.01), ("2024-05-02", 0.04)]
    assert await store.integrity_ok()


async def test_quota_tx_rolls_back_on_error(store: AnyStore) -> None:
    with pytest.raises(ZeroDivisionError):
        async with store.quota_tx() as tx:
            await tx.append(LedgerEntry(kind="grant", actor_key="telegram:1", day="2024-05-01",
                                        month="2024-05", bonus=10))
            _ = 1 / 0
    assert await store.ledger() == []
    async with store.quota_tx() as tx:  # the connection is usable again
        assert await tx.bonus("telegram:1") == 0  # the counter rolled back with the row


async def test_integrity_check(store: AnyStore) -> None:
    assert await store.integrity_ok()
    if isinstance(store, SqliteStore):
        assert await fetch(store, "PRAGMA integrity_check") == [("ok",)]


# ----- records -----------------------------------------------------------------------------------


async def test_turns_bindings_cascade_and_children_become_roots(store: AnyStore) -> None:
    now = datetime(2024, 5, 1, tzinfo=UTC)

    def turn(turn_id: str, parent: str | None) -> Turn:
        return Turn(id=turn_id, actor_key="telegram:1", chat_key="telegram:1", prompt="p",
                    model="nano-banana", size="1K", aspect="1:1", parent_id=parent,
                    input_hashes=(), output_hashes=("ab" * 32,), provider_state=None,
                    created_at=now)

    await store.add_turn(turn("a", None))
    await store.add_turn(turn("b", "a"))
    assert await store.get_turn("b") == turn("b", "a")
    message = MessageRef("telegram", "1", "100")
    await store.bind("a", [message])
    assert await store.bound_turn(message) == "a"
    await store.bind("b", [message])  # re-bound: the message moves
    assert await store.bound_turn(message) == "b"
    await store.bind("a", [message])
    await store.bind("gone", [MessageRef("telegram", "1", "101")])  # no turn: nothing bound
    assert await store.bound_turn(MessageRef("telegram", "1", "101")) is None
    await store.delete_turn("a")
    assert await store.bound_turn(message) is None
    child = await store.get_turn("b")
    assert child is not None and child.parent_id is None
    await store.add_turn(turn("c", "a"))  # the parent is gone: stored as a root
    assert (await store.get_turn("c")).parent_id is None  # type: ignore[union-attr]


async def test_users_flags_and_settings(store: AnyStore) -> None:
    assert (await store.get_user("discord:9")).banned is False
    await store.set_user_flags("discord:9", banned=True, daily_limit=3)
    await store.save_user_settings("discord:9", UserSettings(locale="zh-Hans"))
    record = await store.get_user("discord:9")
    assert record.banned and record.daily_limit == 3 and record.monthly_limit is None
    assert record.settings.locale == "zh-Hans"
    await store.set_user_flags("discord:9", banned=False)
    assert (await store.get_user("discord:9")).banned is False
    await store.set_user_flags("discord:10")  # nothing to change: no row
    assert (await store.get_user("discord:10")).banned is False


async def test_recent_turns_and_ledger_since(store: AnyStore) -> None:
    base = datetime(2024, 5, 1, tzinfo=UTC)
    for i in range(6):
        actor = "telegram:1" if i % 2 == 0 else "discord:2"
        await store.add_turn(Turn(id=f"t{i}", actor_key=actor, chat_key=actor, prompt=f"p{i}",
                                  model="nano-banana", size="1K", aspect="1:1", parent_id=None,
                                  input_hashes=(), output_hashes=(), provider_state=None,
                                  created_at=base.replace(hour=i)))
    assert [t.id for t in await store.recent_turns(3)] == ["t3", "t4", "t5"]  # newest 3, oldest first
    assert [t.id for t in await store.recent_turns(2, "telegram:1")] == ["t2", "t4"]
    async with store.quota_tx() as tx:
        for day in ("2024-04-29", "2024-04-30", "2024-05-01"):
            await tx.append(LedgerEntry(kind="grant", actor_key="telegram:1", day=day,
                                        month=day[:7], bonus=1))
    assert [e.day for e in await store.ledger_since("2024-04-30")] == ["2024-04-30", "2024-05-01"]


# ----- SQLite only --------------------------------------------------------------------------------


async def test_wal_mode_and_busy_timeout(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    rows = await store.db.execute_fetchall("PRAGMA journal_mode")
    assert next(iter(rows))[0] == "wal"
    rows = await store.db.execute_fetchall("PRAGMA busy_timeout")
    assert next(iter(rows))[0] == 10_000
    rows = await store.db.execute_fetchall("PRAGMA foreign_keys")
    assert next(iter(rows))[0] == 1
    with raw(store.path) as db:  # WAL is a property of the file, seen by every connection
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_busy_timeout_is_configurable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.sqlite3", busy_timeout_ms=1234)
    await store.open()
    try:
        rows = await store.db.execute_fetchall("PRAGMA busy_timeout")
        assert next(iter(rows))[0] == 1234
    finally:
        await store.close()


def test_statement_splitter_keeps_trigger_bodies() -> None:
    sql = """
-- comment
CREATE TABLE t (x INTEGER); -- trailing
CREATE TRIGGER t_no_update BEFORE UPDATE ON t
BEGIN SELECT RAISE(ABORT, 'no'); END;
CREATE TRIGGER t_two BEFORE DELETE ON t
BEGIN
  SELECT 1;
  SELECT RAISE(ABORT, 'no');
END;
"""
    statements = _statements(sql)
    assert len(statements) == 3
    assert statements[2].startswith("CREATE TRIGGER t_two") and statements[2].endswith("END;")


async def test_a_failed_commit_leaves_the_connection_usable(sqlite_store: SqliteStore) -> None:
    """A COMMIT that fails (here: a deferred foreign key) must not leave a transaction open."""
    store = sqlite_store
    with pytest.raises(sqlite3.IntegrityError):
        async with store.quota_tx():
            await store.db.execute("PRAGMA defer_foreign_keys = ON")
            await store.db.execute(
                "INSERT INTO bindings VALUES ('telegram', '1', '1', 'no-such-turn')")
    assert not store.db.in_transaction
    async with store.quota_tx() as tx:
        await tx.append(LedgerEntry(kind="grant", actor_key="telegram:1", day="2024-05-01",
                                    month="2024-05", bonus=3))
    assert await store.bound_turn(MessageRef("telegram", "1", "1")) is None
    assert [e.bonus for e in await store.ledger()] == [3]


def test_counters_are_backfilled_from_an_older_ledger(tmp_path: Path) -> None:
    """Migration 0006 on a database with history: the counters start equal to the ledger's sums."""
    path = tmp_path / "old.sqlite3"
    with raw(path) as db:
        for version, sql in migrations():
            if version < 6:
                for statement in _statements(sql):
                    db.execute(statement)
        db.execute("PRAGMA user_version = 5")
        db.executemany(
            "INSERT INTO ledger (ts, kind, actor_key, chat_key, day, month, credits, bonus, usd)"
            " VALUES ('2024-05-01T00:00:00+00:00', ?, ?, ?, ?, '2024-05', ?, ?, ?)",
            [("grant", "telegram:1", None, "2024-05-01", 0, 5, 0.0),
             ("reserve", "telegram:1", "telegram:-9", "2024-05-01", 2, -1, 0.03),
             ("reserve", "telegram:2", None, "2024-05-02", 4, 0, 0.04)])
    for version, sql in migrations():
        if version == 6:
            with raw(path) as db:
                for statement in _statements(sql):
                    db.execute(statement)
    with raw(path) as db:
        got = set(db.execute("SELECT scope, key, period, units, round(usd, 6) FROM counters"))
    assert got == {("user_day", "telegram:1", "2024-05-01", 2, 0), ("user_day", "telegram:2",
                   "2024-05-02", 4, 0), ("user_month", "telegram:1", "2024-05", 2, 0),
                   ("user_month", "telegram:2", "2024-05", 4, 0), ("bonus", "telegram:1", "", 4, 0),
                   ("bonus", "telegram:2", "", 0, 0), ("chat_day", "telegram:-9", "2024-05-01", 3, 0),
                   ("usd_day", "", "2024-05-01", 0, 0.03), ("usd_day", "", "2024-05-02", 0, 0.04)}


# ----- PostgreSQL's URL: chosen by [store] url, never shown with its password --------------------


def test_store_url_is_a_postgres_url_and_its_errors_hide_it(tmp_path: Path) -> None:
    assert Settings().store.url is None  # SQLite by default
    env = {"IMAGINE__STORE__URL": "postgresql://bot:s3cret-pw@db.internal:5432/imagine"}
    assert load_settings(None, env).store.url == env["IMAGINE__STORE__URL"]
    assert load_settings(None, {"IMAGINE__STORE__URL": ""}).store.url is None
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"IMAGINE__STORE__URL": "mysql://bot:s3cret-pw@db/imagine"})
    assert "[store] url" in str(info.value) and "postgresql://" in str(info.value)
    assert "s3cret-pw" not in str(info.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://bot:s3cret-pw@db:5432/imagine", "postgresql://bot:***@db:5432/imagine"),
    ("postgres://bot@db/imagine?password=s3cret-pw&sslmode=require",
     "postgres://bot@db/imagine?password=***&sslmode=require"),
    ("postgresql://:s3cret-pw@db/imagine", "postgresql://:***@db/imagine"),
    ("postgresql://bot:s3cret@pw@db/imagine", "postgresql://bot:***@db/imagine"),
])
def test_database_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    secrets = url_secrets(url)
    assert secrets and all(s in url for s in secrets)
    assert not any(s in redact_url(url) for s in secrets)


def test_a_url_without_a_password_has_no_secret() -> None:
    url = "postgresql://bot@db/imagine?sslmode=require"
    assert url_secrets(url) == [] and redact_url(url) == url
    assert url_secrets(None) == []


async def test_an_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    store = PostgresStore("postgresql://bot:s3cret-pw@127.0.0.1:1/imagine", timeout=2)
    with pytest.raises(StoreUnavailable) as info:
        await store.open()
    assert "postgresql://bot:***@127.0.0.1:1/imagine" in str(info.value)
    assert "s3cret-pw" not in str(info.value)
    assert not await store.writable()  # never opened: not ready, and no crash
    await store.close()
