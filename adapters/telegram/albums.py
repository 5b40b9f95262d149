"""Albums arrive as separate updates sharing ``media_group_id``: collect them, then run once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram import Message

#: Telegram albums hold at most 10 items.
ALBUM_MAX = 10


@dataclass(slots=True)
class _Pending:
    messages: list[Message] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class AlbumCollector:
    """Debounces album parts per (chat, media_group_id) and hands over the whole album."""

    def __init__(self, debounce: float,
                 on_album: Callable[[list[Message]], Coroutine[Any, Any, None]],
                 spawn: Callable[[Coroutine[Any, Any, None], str], None]) -> None:
        self._debounce = debounce
        self._on_album = on_album
        self._spawn = spawn
        self._pending: dict[tuple[int, str], _Pending] = {}

    def add(self, message: Message) -> None:
        """Add one part; the album is handed over ``debounce`` s after its last part."""
        key = (message.chat_id, message.media_group_id or "")
        entry = self._pending.setdefault(key, _Pending())
        if all(m.message_id != message.message_id for m in entry.messages):
            entry.messages.append(message)
        if entry.timer is not None:
            entry.timer.cancel()
        if len(entry.messages) >= ALBUM_MAX:
            self._flush(key)
        else:
            entry.timer = asyncio.get_running_loop().call_later(self._debounce, self._flush, key)

    def _flush(self, key: tuple[int, str]) -> None:
        entry = self._pending.pop(key, None)
        if entry is None:
            return
        if entry.timer is not None:
            entry.timer.cancel()
        messages = sorted(entry.messages, key=lambda m: m.message_id)
        self._spawn(self._on_album(messages), f"album:{key[1]}")

    def cancel(self) -> None:
        """Drop albums still being collected (shutdown)."""
        for entry in self._pending.values():
            if entry.timer is not None:
                entry.timer.cancel()
        self._pending.clear()
