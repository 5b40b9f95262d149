"""Both store engines for the store tests: SQLite on a temp file, PostgreSQL in a fresh schema.

PostgreSQL is the machine's server (``IMAGINE_TEST_PG_URL``, default the local one with trust
auth). Each test session makes a database of its own and drops it after; each test gets a new
schema in it, so runs and tests never see each other's rows. Without a server the PostgreSQL
half skips, saying why; ``IMAGINE_REQUIRE_SERVICES=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import aiosqlite
import asyncpg
import pytest

from bot.storage.postgres import PostgresStore
from bot.storage.sqlite import SqliteStore
from bot.storage.urls import redact_url

ADMIN_URL = os.environ.get("IMAGINE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE = os.environ.get("IMAGINE_REQUIRE_SERVICES", "") not in ("", "0")
ENGINES = ("sqlite", "postgres")
#: What each engine raises for a row that breaks a constraint.
INTEGRITY_ERRORS = (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)
#: What each engine raises when a trigger refuses a change (the append-only ledger).
REFUSED_ERRORS = (sqlite3.DatabaseError, asyncpg.RaiseError)
AnyStore = SqliteStore | PostgresStore


def service_missing(reason: str) -> NoReturn:
    """Skip, or fail when the run says every service must be there."""
    if REQUIRE:
        pytest.fail(f"{reason} (IMAGINE_REQUIRE_SERVICES=1: required services must be up)")
    pytest.skip(reason)


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def admin(url: str, *statements: str) -> None:
    """Run statements on their own connection (CREATE / DROP DATABASE cannot run in a transaction)."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def create_database() -> str:
    """A new uniquely named database for this session; its URL (skips when there is no server)."""
    name = f"imagine_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(admin(ADMIN_URL, f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        service_missing(f"PostgreSQL is not reachable at {redact_url(ADMIN_URL)} "
                        f"({type(exc).__name__}: {exc}); set IMAGINE_TEST_PG_URL to test it")
    return with_database(ADMIN_URL, name)


def drop_database(url: str) -> None:
    """Drop the session's database, whoever is still connected."""
    name = urlsplit(url).path.lstrip("/")
    asyncio.run(admin(ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def new_schema(database_url: str) -> str:
    """A new empty schema in the session's database; its name."""
    name = f"t_{secrets.token_hex(6)}"
    await admin(database_url, f'CREATE SCHEMA "{name}"')
    return name


async def drop_schema(database_url: str, name: str) -> None:
    """Drop a test's schema with everything in it."""
    await admin(database_url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def fetch(store: AnyStore, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of a query from outside the port (``?`` placeholders; ``$n`` on PostgreSQL)."""
    if isinstance(store, SqliteStore):
        return [tuple(r) for r in await store.db.execute_fetchall(sql, args)]
    return [tuple(r) for r in await store.pool.fetch(_numbered(sql), *args)]


async def execute(store: AnyStore, sql: str, *args: Any) -> None:
    """One statement from outside the port (``?`` placeholders)."""
    if isinstance(store, SqliteStore):
        await store.db.execute(sql, args)
    else:
        await store.pool.execute(_numbered(sql), *args)


def _numbered(sql: str) -> str:
    parts = sql.split("?")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


def tables_of(rows: Sequence[tuple[Any, ...]]) -> set[str]:
    """Table names from a one-column query."""
    return {str(r[0]) for r in rows}


@asynccontextmanager
async def read_only(store: AnyStore) -> AsyncIterator[None]:
    """The store's database refuses writes until the block ends (reads still work)."""
    if isinstance(store, SqliteStore):
        # The file (or its volume) became read-only: the test stands in for the operating system.
        await store.db.close()
        db = await aiosqlite.connect(f"file:{store.path}?mode=ro", uri=True, isolation_level=None)
        db.row_factory = aiosqlite.Row
        store._db = db
        yield
        return
    # A database switched to read-only (as a standby is): new connections start read-only.
    name = urlsplit(store._url).path.lstrip("/")
    await admin(ADMIN_URL, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    await store.pool.expire_connections()
    try:
        yield
    finally:
        await admin(ADMIN_URL, f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        await store.pool.expire_connections()
