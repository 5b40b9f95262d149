"""The record part of :class:`~bot.storage.postgres.PostgresStore`: users, groups, turns,
bindings, blobs and figures (the money part lives in postgres.py and postgres_tx.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bot.domain import MessageRef, Turn, UserSettings
from bot.storage.base import BlobInfo, UserRecord
from bot.storage.recipes import prompts_json, prompts_of, recipe_fields, recipe_json


def _turn(row: asyncpg.Record) -> Turn:
    return Turn(
        id=row["id"], actor_key=row["actor_key"], chat_key=row["chat_key"], prompt=row["prompt"],
        model=row["model"], size=row["size"], aspect=row["aspect"], parent_id=row["parent_id"],
        input_hashes=tuple(json.loads(row["input_hashes"])),
        output_hashes=tuple(json.loads(row["output_hashes"])),
        provider_state=row["provider_state"], created_at=row["created_at"], kind=row["kind"],
        credits=row["credits"], **recipe_fields(row["recipe"]),
    )


def _blob(r: asyncpg.Record) -> BlobInfo:
    return BlobInfo(r["hash"], r["mime"], r["size"], r["width"], r["height"])


class PgRecords:
    """Users, groups, turns, bindings, blobs and stats on the store's pool."""

    _redact: Callable[[str], str]

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        raise NotImplementedError

    async def _execute(self, sql: str, *args: Any) -> None:
        raise NotImplementedError

    async def _executemany(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    async def get_user(self, key: str) -> UserRecord:
        """A user's record, defaults when unknown."""
        rows = await self._fetch("SELECT * FROM users WHERE key = $1", key)
        if not rows:
            return UserRecord(key=key, settings=UserSettings())
        r = rows[0]
        return UserRecord(
            key=key,
            settings=UserSettings(model=r["model"], size=r["size"], aspect=r["aspect"],
                                  locale=r["locale"], search=r["search"], n=r["n"],
                                  style=r["style"]),
            banned=r["banned"], ban_notified=r["ban_notified"], daily_limit=r["daily_limit"],
            monthly_limit=r["monthly_limit"])

    async def save_user_settings(self, key: str, settings: UserSettings) -> None:
        """Store a user's defaults."""
        await self._execute(
            "INSERT INTO users (key, model, size, aspect, locale, search, n, style, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) ON CONFLICT (key) DO UPDATE SET"
            " model = EXCLUDED.model, size = EXCLUDED.size, aspect = EXCLUDED.aspect,"
            " locale = EXCLUDED.locale, search = EXCLUDED.search, n = EXCLUDED.n,"
            " style = EXCLUDED.style",
            key, settings.model, settings.size, settings.aspect, settings.locale, settings.search,
            settings.n, settings.style)

    async def set_user_flags(self, key: str, *, banned: bool | None = None,
                             ban_notified: bool | None = None, daily_limit: int | None = None,
                             monthly_limit: int | None = None) -> None:
        """Update ban state or limit overrides (None leaves a field as it is)."""
        fields = {"banned": banned, "ban_notified": ban_notified, "daily_limit": daily_limit,
                  "monthly_limit": monthly_limit}
        updates = {k: v for k, v in fields.items() if v is not None}
        if not updates:
            return
        names = list(updates)  # column names from the dict above, never from input
        placeholders = ", ".join(f"${i}" for i in range(2, len(names) + 2))
        sets = ", ".join(f"{n} = EXCLUDED.{n}" for n in names)
        await self._execute(
            f"INSERT INTO users (key, {', '.join(names)}, created_at) VALUES ($1, {placeholders},"
            f" now()) ON CONFLICT (key) DO UPDATE SET {sets}", key, *updates.values())

    async def group_settings(self, key: str) -> str | None:
        """A group's /config settings as JSON, None when never set."""
        rows = await self._fetch("SELECT settings FROM chats WHERE key = $1", key)
        return rows[0]["settings"] if rows else None

    async def save_group_settings(self, key: str, data: str, *, by: str) -> None:
        """Store a group's /config settings, and who set them."""
        await self._execute(
            "INSERT INTO chats (key, settings, settings_by, created_at) VALUES ($1, $2, $3, now())"
            " ON CONFLICT (key) DO UPDATE SET settings = EXCLUDED.settings,"
            " settings_by = EXCLUDED.settings_by", key, data, by)

    async def all_group_settings(self) -> list[tuple[str, str, str | None]]:
        """Every configured group: (key, settings JSON, set by)."""
        rows = await self._fetch("SELECT key, settings, settings_by FROM chats"
                                 " WHERE settings IS NOT NULL ORDER BY key")
        return [(r["key"], r["settings"], r["settings_by"]) for r in rows]

    async def note_chat(self, chat_key: str, group_key: str) -> None:
        """Remember that ``chat_key`` belongs to ``group_key``."""
        await self._execute(
            "INSERT INTO chats (key, group_key, created_at) VALUES ($1, $2, now())"
            " ON CONFLICT (key) DO UPDATE SET group_key = EXCLUDED.group_key", chat_key, group_key)

    async def member_used(self, actor_key: str, group_key: str, day: str) -> int:
        """Credits a member held or spent in a group (any of its chats) on a day."""
        rows = await self._fetch(
            "SELECT SUM(credits) - SUM(bonus) - SUM(paid) AS used FROM ledger WHERE actor_key = $1"
            " AND day = $2 AND kind IN ('reserve', 'settle', 'refund') AND (chat_key = $3 OR"
            " chat_key IN"
            " (SELECT key FROM chats WHERE group_key = $3))", actor_key, day, group_key)
        return int(rows[0]["used"] or 0) if rows else 0

    async def add_turn(self, turn: Turn) -> None:
        """Insert a turn (a root when its parent was deleted meanwhile); provider state masked."""
        state = self._redact(turn.provider_state) if turn.provider_state is not None else None
        await self._execute(
            "INSERT INTO turns (id, actor_key, chat_key, parent_id, kind, prompt, model, size,"
            " aspect, input_hashes, output_hashes, provider_state, credits, created_at, recipe)"
            " VALUES ($1, $2, $3, (SELECT id FROM turns WHERE id = $4), $5, $6, $7, $8, $9, $10,"
            " $11, $12, $13, $14, $15)",
            turn.id, turn.actor_key, turn.chat_key, turn.parent_id, turn.kind, turn.prompt,
            turn.model, turn.size, turn.aspect, json.dumps(list(turn.input_hashes)),
            json.dumps(list(turn.output_hashes)), state, turn.credits, turn.created_at,
            recipe_json(turn))

    async def get_turn(self, turn_id: str) -> Turn | None:
        """A turn by id."""
        rows = await self._fetch("SELECT * FROM turns WHERE id = $1", turn_id)
        return _turn(rows[0]) if rows else None

    async def delete_turn(self, turn_id: str) -> None:
        """Delete a turn; bindings cascade, children become roots."""
        await self._execute("DELETE FROM turns WHERE id = $1", turn_id)

    async def turns_of(self, actor_key: str) -> list[Turn]:
        """Every turn of an actor, oldest first."""
        rows = await self._fetch("SELECT * FROM turns WHERE actor_key = $1 ORDER BY created_at",
                                 actor_key)
        return [_turn(r) for r in rows]

    async def recent_turns(self, limit: int, actor_key: str | None = None) -> list[Turn]:
        """The newest ``limit`` turns, oldest first."""
        if actor_key is None:
            rows = await self._fetch("SELECT * FROM turns ORDER BY created_at DESC LIMIT $1",
                                     limit)
        else:
            rows = await self._fetch("SELECT * FROM turns WHERE actor_key = $1"
                                     " ORDER BY created_at DESC LIMIT $2", actor_key, limit)
        return [_turn(r) for r in reversed(rows)]

    async def bind(self, turn_id: str, messages: list[MessageRef]) -> None:
        """Map platform messages to a turn (re-bound ones move); nothing when the turn is gone."""
        await self._executemany(
            "INSERT INTO bindings (platform, chat_id, message_id, turn_id)"
            " SELECT $1, $2, $3, id FROM turns WHERE id = $4"
            " ON CONFLICT (platform, chat_id, message_id) DO UPDATE SET turn_id = EXCLUDED.turn_id",
            [(m.platform, m.chat_id, m.message_id, turn_id) for m in messages])

    async def turns_page(self, actor_key: str, offset: int, limit: int) -> tuple[list[Turn], int]:
        """A page of an actor's turns, newest first, and how many they have."""
        rows = await self._fetch("SELECT *, COUNT(*) OVER () AS total FROM turns"
                                 " WHERE actor_key = $1 ORDER BY created_at DESC, id"
                                 " LIMIT $2 OFFSET $3", actor_key, limit, offset)
        if rows:
            return [_turn(r) for r in rows], int(rows[0]["total"])
        counted = await self._fetch("SELECT COUNT(*) AS n FROM turns WHERE actor_key = $1",
                                    actor_key)
        return [], int(counted[0]["n"])

    async def save_suggestions(self, sid: str, actor_key: str, prompts: list[str]) -> None:
        """Keep /describe's prompts for their buttons."""
        await self._execute("INSERT INTO suggestions (id, actor_key, prompts) VALUES ($1, $2, $3)",
                            sid, actor_key, prompts_json(prompts))

    async def suggestions(self, sid: str) -> tuple[str, list[str]] | None:
        """Whose suggestions ``sid`` are, and the prompts."""
        rows = await self._fetch("SELECT actor_key, prompts FROM suggestions WHERE id = $1", sid)
        return (rows[0]["actor_key"], prompts_of(rows[0]["prompts"])) if rows else None

    async def forget_suggestions(self, actor_key: str) -> None:
        """Delete every suggestion kept for an actor."""
        await self._execute("DELETE FROM suggestions WHERE actor_key = $1", actor_key)

    async def bound_turn(self, message: MessageRef) -> str | None:
        """The turn a platform message shows."""
        rows = await self._fetch(
            "SELECT turn_id FROM bindings WHERE platform = $1 AND chat_id = $2 AND message_id = $3",
            message.platform, message.chat_id, message.message_id)
        return str(rows[0]["turn_id"]) if rows else None

    async def bindings_of(self, turn_id: str) -> list[MessageRef]:
        """Platform messages bound to a turn."""
        rows = await self._fetch("SELECT * FROM bindings WHERE turn_id = $1", turn_id)
        return [MessageRef(r["platform"], r["chat_id"], r["message_id"]) for r in rows]

    async def put_blob(self, info: BlobInfo, used_at: datetime | None = None) -> None:
        """Index a blob, or refresh its last use (``used_at``, by the caller's clock)."""
        now = used_at if used_at is not None else datetime.now(UTC)
        await self._execute(
            "INSERT INTO blobs (hash, mime, size, width, height, created_at, last_used_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $6)"
            " ON CONFLICT (hash) DO UPDATE SET last_used_at = EXCLUDED.last_used_at",
            info.hash, info.mime, info.size, info.width, info.height, now)

    async def add_result(self, blobs: Sequence[BlobInfo], used_at: datetime, turn: Turn,
                         reservation_id: str | None) -> None:
        """put_blob for each, add_turn, then the link: pooled connections wait on no lock here."""
        for info in blobs:
            await self.put_blob(info, used_at)
        await self.add_turn(turn)
        if reservation_id is not None:
            await self._execute("UPDATE reservations SET turn_id = $1 WHERE id = $2",
                                turn.id, reservation_id)

    async def get_blob(self, digest: str) -> BlobInfo | None:
        """A blob's index row."""
        rows = await self._fetch("SELECT * FROM blobs WHERE hash = $1", digest)
        return _blob(rows[0]) if rows else None

    async def blob_refs(self, digest: str) -> int:
        """How many turns reference a blob (as input or output)."""
        pattern = f'%"{digest}"%'
        rows = await self._fetch("SELECT COUNT(*) AS n FROM turns"
                                 " WHERE input_hashes LIKE $1 OR output_hashes LIKE $1", pattern)
        return int(rows[0]["n"])

    async def prunable_blobs(self, older_than: datetime) -> list[str]:
        """Blobs not used since ``older_than``."""
        rows = await self._fetch("SELECT hash FROM blobs WHERE last_used_at < $1", older_than)
        return [str(r["hash"]) for r in rows]

    async def blobs_by_age(self) -> list[BlobInfo]:
        """Every blob, least recently used first."""
        return [_blob(r) for r in await self._fetch("SELECT * FROM blobs ORDER BY last_used_at")]

    async def delete_blobs(self, digests: list[str]) -> None:
        """Drop blob index rows."""
        await self._execute("DELETE FROM blobs WHERE hash = ANY($1::text[])", digests)

    async def stats(self, day: str) -> dict[str, float]:
        """Jobs settled, credits, USD and distinct users on a day."""
        rows = await self._fetch(
            "SELECT COUNT(*) AS jobs, COALESCE(SUM(credits + bonus + paid), 0) AS credits,"
            " COALESCE(SUM(usd), 0) AS usd, COUNT(DISTINCT actor_key) AS users"
            " FROM reservations WHERE day = $1 AND state = 'settled'", day)
        r = rows[0]
        return {"jobs": r["jobs"], "credits": r["credits"], "usd": round(r["usd"], 4),
                "users": r["users"]}
