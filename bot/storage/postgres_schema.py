"""The PostgreSQL schema: numbered SQL files in ``migrations_pg/``, pending ones in one transaction.

Why a folder per dialect and not one runner over one set of files (or alembic): the two engines
differ exactly where this schema is interesting (SQLite's trigger bodies and ``PRAGMA
user_version`` against PL/pgSQL, identity columns, ``timestamptz`` and advisory locks), and
alembic would bring SQLAlchemy for a dozen tables. The rule that keeps them one schema: the same
number is the same change in both folders (``tests/test_store.py`` checks the numbers match).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.storage.postgres_tx import Conn

#: Serialises migrations of processes starting at once against the same schema.
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('imagine-bot migrations ' || current_schema()))"


def pg_migrations() -> list[tuple[int, str]]:
    """Bundled PostgreSQL migrations as (version, sql), lowest first."""
    folder = resources.files("bot.storage").joinpath("migrations_pg")
    return sorted((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8"))
                  for entry in folder.iterdir() if entry.name.endswith(".sql"))


async def schema_version(conn: Conn) -> int:
    """The newest applied migration (0 for an empty schema)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))


async def migrate(conn: Conn, where: str) -> int:
    """Apply pending migrations; ConfigError for a schema newer than this code. The version."""
    bundled = pg_migrations()
    newest = bundled[-1][0] if bundled else 0
    async with conn.transaction():
        await conn.execute(_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                           " version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)")
        current = await schema_version(conn)
        if current > newest:
            raise ConfigError(
                f"database {where} is at schema version {current}, newer than this imagine-bot "
                f"understands ({newest}); upgrade imagine-bot or use a backup")
        for version, sql in bundled:
            if version > current:
                await conn.execute(sql)  # no arguments: the simple protocol runs the whole file
                await conn.execute("INSERT INTO schema_version VALUES ($1, now())", version)
    return max(current, newest)
