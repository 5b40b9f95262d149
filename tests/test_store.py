"""SqliteStore on a real file: migrations, refusal of newer databases, WAL, append-only ledger."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.domain import MessageRef, Turn, UserSettings
from bot.errors import ConfigError
from bot.storage.base import LedgerEntry
from bot.storage.sqlite import SqliteStore, _statements, migrations

TABLES = {"users", "chats", "ledger", "reservations", "turns", "bindings", "blobs"}
LATEST = migrations()[-1][0]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "db" / "imagine.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection to look at the file from outside the store."""
    return sqlite3.connect(path)


def tables(path: Path) -> set[str]:
    with raw(path) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows} - {"sqlite_sequence"}


def user_version(path: Path) -> int:
    with raw(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_migrations_are_numbered_from_one() -> None:
    versions = [v for v, _ in migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert all(sql.strip() for _, sql in migrations())


async def test_migrations_up_from_empty(store: SqliteStore) -> None:
    path = store.path
    assert path.exists()  # created with its parent directory
    assert tables(path) >= TABLES
    assert user_version(path) == LATEST
    assert await store.schema_version() == LATEST


async def test_reopening_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "imagine.sqlite3"
    first = SqliteStore(path)
    await first.open()
    await first.save_user_settings("telegram:1", UserSettings(model="nano-banana-pro", size="2K"))
    await first.close()
    for _ in range(2):
        again = SqliteStore(path)
        await again.open()
        assert await again.schema_version() == LATEST
        record = await again.get_user("telegram:1")
        assert record.settings == UserSettings(model="nano-banana-pro", size="2K")
        await again.close()
    assert tables(path) >= TABLES


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
    assert not tables(path)
    with pytest.raises(RuntimeError, match="not open"):
        _ = store.db
    await store.close()


async def test_wal_mode_and_busy_timeout(store: SqliteStore) -> None:
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


async def test_ledger_is_append_only(store: SqliteStore) -> None:
    async with store.quota_tx() as tx:
        await tx.append(LedgerEntry(kind="grant", actor_key="telegram:1", day="2024-05-01",
                                    month="2024-05", bonus=10))
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        await store.db.execute("UPDATE ledger SET bonus = 1000")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        await store.db.execute("DELETE FROM ledger")
    entries = await store.ledger("telegram:1")
    assert [(e.kind, e.bonus) for e in entries] == [("grant", 10)]
    # The triggers hold for any client, not just ours.
    with raw(store.path) as db, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM ledger")


async def test_ledger_kind_is_checked(store: SqliteStore) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        async with store.quota_tx() as tx:
            await tx.append(LedgerEntry(kind="gift", actor_key="telegram:1",  # type: ignore[arg-type]
                                        day="2024-05-01", month="2024-05"))
    assert await store.ledger() == []  # rolled back


async def test_quota_tx_rolls_back_on_error(store: SqliteStore) -> None:
    with pytest.raises(ZeroDivisionError):
        async with store.quota_tx() as tx:
            await tx.append(LedgerEntry(kind="grant", actor_key="telegram:1", day="2024-05-01",
                                        month="2024-05", bonus=10))
            _ = 1 / 0
    assert await store.ledger() == []
    async with store.quota_tx() as tx:  # the connection is usable again
        assert await tx.bonus("telegram:1") == 0


async def test_integrity_check(store: SqliteStore) -> None:
    assert await store.integrity_ok()
    rows = await store.db.execute_fetchall("PRAGMA integrity_check")
    assert next(iter(rows))[0] == "ok"


async def test_turns_bindings_cascade_and_children_become_roots(store: SqliteStore) -> None:
    now = datetime(2024, 5, 1, tzinfo=UTC)

    def turn(turn_id: str, parent: str | None) -> Turn:
        return Turn(id=turn_id, actor_key="telegram:1", chat_key="telegram:1", prompt="p",
                    model="nano-banana", size="1K", aspect="1:1", parent_id=parent,
                    input_hashes=(), output_hashes=("ab" * 32,), provider_state=None,
                    created_at=now)

    await store.add_turn(turn("a", None))
    await store.add_turn(turn("b", "a"))
    message = MessageRef("telegram", "1", "100")
    await store.bind("a", [message])
    assert await store.bound_turn(message) == "a"
    await store.delete_turn("a")
    assert await store.bound_turn(message) is None
    child = await store.get_turn("b")
    assert child is not None and child.parent_id is None


async def test_users_flags_and_settings(store: SqliteStore) -> None:
    assert (await store.get_user("discord:9")).banned is False
    await store.set_user_flags("discord:9", banned=True, daily_limit=3)
    await store.save_user_settings("discord:9", UserSettings(locale="zh-Hans"))
    record = await store.get_user("discord:9")
    assert record.banned and record.daily_limit == 3 and record.monthly_limit is None
    assert record.settings.locale == "zh-Hans"
    await store.set_user_flags("discord:9", banned=False)
    assert (await store.get_user("discord:9")).banned is False


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


async def test_a_failed_commit_leaves_the_connection_usable(store: SqliteStore) -> None:
    """A COMMIT that fails (here: a deferred foreign key) must not leave a transaction open."""
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


async def test_recent_turns_and_ledger_since(store: SqliteStore) -> None:
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
