"""/history pages and /describe's suggestions on SQLite (migration 0008)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from bot.domain import Turn
from bot.storage.recipes import prompts_json, prompts_of


class SqliteGallery:
    """The gallery part of the Store port for :class:`~bot.storage.sqlite.SqliteStore`."""

    _turn_row: Callable[[aiosqlite.Row], Turn]

    async def _write(self, sql: str, params: Iterable[Any] = ()) -> None:
        raise NotImplementedError

    async def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def turns_page(self, actor_key: str, offset: int, limit: int) -> tuple[list[Turn], int]:
        """A page of an actor's turns, newest first, and how many they have."""
        rows = await self._rows("SELECT * FROM turns WHERE actor_key = ? ORDER BY created_at DESC,"
                                " id LIMIT ? OFFSET ?", (actor_key, limit, offset))
        total = await self._rows("SELECT COUNT(*) AS n FROM turns WHERE actor_key = ?",
                                 (actor_key,))
        return [self._turn_row(r) for r in rows], int(total[0]["n"])

    async def save_suggestions(self, sid: str, actor_key: str, prompts: list[str]) -> None:
        """Keep /describe's prompts for their buttons."""
        await self._write("INSERT INTO suggestions (id, actor_key, prompts, created_at)"
                          " VALUES (?, ?, ?, ?)",
                          (sid, actor_key, prompts_json(prompts), datetime.now(UTC).isoformat()))

    async def suggestions(self, sid: str) -> tuple[str, list[str]] | None:
        """Whose suggestions ``sid`` are, and the prompts."""
        rows = await self._rows("SELECT actor_key, prompts FROM suggestions WHERE id = ?", (sid,))
        return (rows[0]["actor_key"], prompts_of(rows[0]["prompts"])) if rows else None

    async def forget_suggestions(self, actor_key: str) -> None:
        """Delete every suggestion kept for an actor."""
        await self._write("DELETE FROM suggestions WHERE actor_key = ?", (actor_key,))
