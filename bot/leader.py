"""Roles that one process at a time holds (housekeeping, registering the Telegram webhook).

With ``[redis] url`` each role is a redis-py ``Lock`` (a key with an owner token and a TTL,
https://redis.readthedocs.io/en/stable/lock.html): the holder renews it every third of its life;
a holder that dies loses it when the TTL runs out and the next process to ask takes it over.
Without Redis this is the only process, so it holds every role.
"""

from __future__ import annotations

import contextlib
import logging

from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

log = logging.getLogger(__name__)


class Leadership:
    """Which roles this process holds; :meth:`hold` takes or renews one."""

    def __init__(self, redis: Redis | None = None, *, prefix: str = "", ttl: float = 60.0) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl
        self._locks: dict[str, Lock] = {}

    @property
    def renew_every(self) -> float:
        """How often a holder asks again to keep its role."""
        return self._ttl / 3

    @property
    def shared(self) -> bool:
        """True when roles are decided among processes (Redis), False when this one holds all."""
        return self._redis is not None

    async def hold(self, role: str) -> bool:
        """Whether this process holds ``role`` now (taken if free, renewed if already ours).

        Ask again well within the TTL (every third of it) to keep the role.
        """
        if self._redis is None:
            return True
        lock = self._locks.get(role)
        try:
            if lock is not None and await lock.owned():
                await lock.reacquire()
                return True
            lock = self._redis.lock(f"{self._prefix}leader:{role}", timeout=self._ttl,
                                    blocking=False)
            if await lock.acquire():
                self._locks[role] = lock
                log.info("this process now holds the %s role", role)
                return True
        except (LockError, RedisError) as exc:
            log.warning("could not take or renew the %s role (%s)", role, exc)
        self._locks.pop(role, None)
        return False

    async def release(self) -> None:
        """Give every held role up (a clean stop: the next process takes over at once)."""
        for lock in self._locks.values():
            with contextlib.suppress(LockError, RedisError):
                await lock.release()
        self._locks.clear()
        if self._redis is not None:
            await self._redis.aclose()
