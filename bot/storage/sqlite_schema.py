"""The SQLite schema: numbered SQL migrations bundled with the package, applied in one transaction."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

import aiosqlite

from bot.errors import ConfigError


def migrations() -> list[tuple[int, str]]:
    """Bundled migrations as (version, sql), lowest first."""
    folder = resources.files("bot.storage").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8")))
    return sorted(found)


async def migrate(db: aiosqlite.Connection, path: Path) -> None:
    """Apply pending migrations at once; ConfigError for a database newer than this code."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        current = (await (await db.execute("PRAGMA user_version")).fetchone() or [0])[0]
        bundled = migrations()
        newest = bundled[-1][0] if bundled else 0
        if current > newest:
            raise ConfigError(
                f"database {path} is at schema version {current}, newer than this "
                f"imagine-bot understands ({newest}); upgrade imagine-bot or use a backup"
            )
        for version, sql in bundled:
            if version > current:
                for statement in _statements(sql):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {version}")
        await db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            await db.execute("ROLLBACK")
        raise


def _statements(sql: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    out: list[str] = []
    buf: list[str] = []
    for line in sql.splitlines():
        stripped = line.split("--", 1)[0].rstrip()
        if not stripped:
            continue
        buf.append(stripped)
        text = "\n".join(buf)
        if stripped.endswith(";") and sqlite3.complete_statement(text):
            out.append(text)
            buf = []
    if buf:
        out.append("\n".join(buf))
    return out
