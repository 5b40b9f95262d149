"""Telegram's sending limits shared by every process sending as one bot (``[redis] url``).

The limits are per bot, not per process (https://core.telegram.org/bots/faq#my-bot-is-hitting-
limits-how-do-i-avoid-this): about 30 messages a second in all, one a second per chat with short
bursts, 20 a minute per group. :class:`RedisSendBudget` keeps adapters/telegram/ratelimit.py's
interface and its local order (lanes, paces); a send then also takes its place in the shared
moving windows of the ``limits`` library on Redis (https://limits.readthedocs.io/en/stable/
strategies.html#moving-window, async Redis storage on redis-py), waiting for the window to move
when another process spent it. A 429 seen by one process holds the others back as long as
Telegram asked (``retry_after``). Status calls take only what is spare: they never wait on Redis,
they go if the last shared look showed room, and are counted in the windows afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from adapters.shared_redis import connect
from adapters.telegram.ratelimit import Chat, Lane, Limits, SendBudget, is_group

log = logging.getLogger(__name__)
#: Longest single wait for a shared window before looking again.
MAX_WAIT = 1.0


class RedisSendBudget(SendBudget):
    """The same budget, its windows shared through Redis by every process of this bot."""

    def __init__(self, url: str, prefix: str, limits: Limits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(limits, clock)
        lim = self.limits
        self._storage = RedisStorage(f"async+{url}", implementation="redispy",
                                     key_prefix=f"{prefix}tg-limits", wrap_exceptions=True)
        self._shared = MovingWindowRateLimiter(self._storage)
        self._redis = connect(url)  # for the 429 hold, which the library has no verb for
        self._hold_key = f"{prefix}tg-hold"
        self._overall = RateLimitItemPerSecond(int(lim.rate))
        self._paid_item = RateLimitItemPerSecond(int(lim.paid_rate))
        burst_seconds = max(1, round(lim.chat_burst / lim.chat_per_second))
        self._chat = RateLimitItemPerSecond(lim.chat_burst, burst_seconds)
        self._group = RateLimitItemPerMinute(int(lim.group_per_minute))
        self._room = True  # the overall window had spare at the last look
        self._tasks: set[asyncio.Task[Any]] = set()

    def _items(self, chat: Chat, paid: bool) -> list[tuple[RateLimitItem, str]]:
        items: list[tuple[RateLimitItem, str]] = [
            (self._paid_item if paid else self._overall, "paid" if paid else "all"),
            (self._chat, f"chat:{chat}")]
        if is_group(chat):
            items.append((self._group, f"group:{chat}"))
        return items

    async def take(self, chat: Chat, which: Lane, paid: bool = False,
                   ready: float | None = None) -> None:
        """This process's turn first (lanes, paces, readiness), then room in the shared windows."""
        await super().take(chat, which, paid, ready)
        try:
            await self._take_shared(chat, paid)
        except BaseException:
            self.landed(paid)  # granted here, never sent
            raise

    async def _take_shared(self, chat: Chat, paid: bool) -> None:
        while True:
            try:
                held = await self._redis.pttl(self._hold_key)
                if held > 0:
                    await asyncio.sleep(min(held / 1000, MAX_WAIT))
                    continue
                wait = 0.0
                for item, key in self._items(chat, paid):
                    if not await self._shared.hit(item, key):
                        stats = await self._shared.get_window_stats(item, key)
                        wait = max(wait, stats.reset_time - time.time())
                        break
                else:
                    stats = await self._shared.get_window_stats(*self._items(chat, paid)[0])
                    self._room = stats.remaining >= 2
                    return
            except (StorageError, RedisError) as exc:
                log.warning("telegram: shared send budget unreachable (%s); pacing locally", exc)
                return
            self._room = False
            await asyncio.sleep(min(max(wait, 0.01), MAX_WAIT))

    def try_take(self, chat: Chat, which: Lane = Lane.STATUS) -> bool:
        """A spare send, if this process has one and the shared windows had room at last look."""
        if not self._room:
            self.sent["skipped"] += 1
            return False
        if not super().try_take(chat, which):
            return False
        self._spawn(self._count(chat))
        return True

    async def _count(self, chat: Chat) -> None:
        with contextlib.suppress(StorageError, RedisError):
            for item, key in self._items(chat, False):
                await self._shared.hit(item, key)

    def flooded(self, chat: Chat, retry_after: float) -> None:
        """A 429: hold back here as the local budget does, and every process if it was overall."""
        super().flooded(chat, retry_after)
        if not is_group(chat):
            self._spawn(self._hold(retry_after))

    async def _hold(self, retry_after: float) -> None:
        with contextlib.suppress(StorageError, RedisError):
            await self._redis.set(self._hold_key, "1", px=max(1, int(retry_after * 1000)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Stop the dispatcher and any shared bookkeeping in flight."""
        super().close()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(RuntimeError):  # no loop: the process is ending anyway
            self._spawn(self._redis.aclose())


def send_budget(url: str | None, prefix: str) -> SendBudget:
    """The budget shared through Redis when ``[redis] url`` is set, else this process's own."""
    return RedisSendBudget(url, prefix) if url else SendBudget()
