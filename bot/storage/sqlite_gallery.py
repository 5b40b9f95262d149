"""/history pages and /describe's suggestions on SQLite (migration 0008)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from bot.domain import Turn
from bot.storage.recipes import prompts_json, prompts_of, recipe_fields


def turn_row(row: aiosqlite.Row) -> Turn:
    """A Turn from its row (its recipe included)."""
    return Turn(
        id=row["id"], actor_key=row["actor_key"], chat_key=row["chat_key"], prompt=row["prompt"],
        model=row["model"], size=row["size"], aspect=row["aspect"], parent_id=row["parent_id"],
        input_hashes=tuple(json.loads(row["input_hashes"])),
        output_hashes=tuple(json.loads(row["output_hashes"])),
        provider_state=row["provider_state"], created_at=datetime.fromisoformat(row["created_at"]),
        kind=row["kind"], credits=row["credits"], **recipe_fields(row["recipe"]),
    )


class SqliteGallery:
    """The gallery part of the Store port for :class:`~bot.storage.sqlite.SqliteStore`."""

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
        return [turn_row(r) for r in rows], int(total[0]["n"])

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
