"""Album parts collected in Redis, for receivers behind one webhook: parts of one album may
reach different processes, so each part goes into one hash per (chat, media_group_id) with a TTL,
and the first receiver to claim the group (SET NX) hands the album over once no part has come
for the debounce window (a part that comes later starts an album of its own, as in
adapters/telegram/albums.py). Telegram sends each part as its own update and documents no
order or timing for them (https://core.telegram.org/bots/api#message, ``media_group_id``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from telegram import Bot, Message

from adapters.shared_redis import connect
from adapters.telegram.albums import ALBUM_MAX, AlbumCollector
from adapters.telegram.runtime import Runtime

log = logging.getLogger(__name__)
#: How long an album's parts and claim live in Redis if nobody collects them.
KEEP_SECONDS = 120


class RedisAlbumCollector:
    """The same interface as :class:`~adapters.telegram.albums.AlbumCollector`, shared."""

    def __init__(self, redis: Redis, prefix: str, debounce: float, bot: Bot,
                 on_album: Callable[[list[Message]], Coroutine[Any, Any, None]],
                 spawn: Callable[[Coroutine[Any, Any, None], str], None]) -> None:
        self._redis = redis
        self._prefix = prefix
        self._debounce = debounce
        self._bot = bot
        self._on_album = on_album
        self._spawn = spawn
        self._mine: set[asyncio.Task[Any]] = set()

    def add(self, message: Message) -> None:
        """Store one part; the receiver that claimed the album hands it over."""
        self._spawn(self._add(message), f"album-part:{message.media_group_id}")

    async def _add(self, message: Message) -> None:
        name = f"{self._prefix}album:{message.chat_id}:{message.media_group_id}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(name, str(message.message_id), json.dumps(message.to_dict()))
                pipe.expire(name, KEEP_SECONDS)
                pipe.set(f"{name}:owner", "1", nx=True, ex=KEEP_SECONDS)
                _, _, claimed = await pipe.execute()
        except RedisError as exc:
            log.error("telegram: album part %s not stored (%s)", message.message_id, exc)
            return
        if not claimed:
            return
        waiting = asyncio.create_task(self._collect(name))
        self._mine.add(waiting)
        try:
            album = await waiting
        finally:
            self._mine.discard(waiting)
        if album:
            self._spawn(self._on_album(album), f"album:{message.media_group_id}")

    async def _collect(self, name: str) -> list[Message]:
        """Wait until no part came for the debounce window (or ten came), then hand over."""
        seen = -1
        while True:
            count = int(await self._redis.hlen(name))
            if count >= ALBUM_MAX or count == seen:
                break
            seen = count
            await asyncio.sleep(self._debounce)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(name)
            pipe.delete(name, f"{name}:owner")
            parts, _ = await pipe.execute()
        messages = [Message.de_json(json.loads(raw), self._bot) for raw in parts.values()]
        return sorted((m for m in messages if m is not None), key=lambda m: m.message_id)

    def cancel(self) -> None:
        """Stop collecting (shutdown); parts left in Redis expire."""
        for task in list(self._mine):
            task.cancel()


def album_collector(rt: Runtime, on_album: Callable[[list[Message]], Coroutine[Any, Any, None]]
                    ) -> AlbumCollector | RedisAlbumCollector:
    """Albums collected in Redis when ``[redis] url`` is set, else in this process."""
    shared = rt.api.settings.redis
    if not shared.url:
        return AlbumCollector(rt.config.album_debounce_seconds, on_album, rt.tasks.spawn)
    return RedisAlbumCollector(connect(shared.url), shared.prefix, rt.config.album_debounce_seconds,
                               rt.bot, on_album, rt.tasks.spawn)
