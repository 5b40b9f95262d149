"""Operator sessions and the console's signing secret in Redis, for consoles in many processes.

A login on one process must hold when the next request reaches another (a reload behind a load
balancer), so a session is a key with the session's life as its TTL. aiohttp-session's Redis
storage would fit the store but replace the console's own cookies and CSRF scheme, and its last
release is from 2024; one key per session on redis-py is all this needs. The secret that signs
visitor cookies and CSRF tokens is shared the same way (the first process to start makes it).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from redis.asyncio import Redis

from adapters.web.security import SESSION_SECONDS


async def shared_secret(redis: Redis, prefix: str) -> bytes:
    """The console secret every process uses: made once (SET NX), then read by all."""
    key = f"{prefix}web:secret"
    await redis.set(key, secrets.token_hex(32), nx=True)
    value = await redis.get(key)
    if not value:
        raise RuntimeError(f"Redis lost {key} just after it was set")
    return str(value).encode()


class RedisSessions:
    """Operator sessions as keys with a TTL; :meth:`load` reads one before a request is served."""

    def __init__(self, redis: Redis, prefix: str, ttl: float = SESSION_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self._prefix = f"{prefix}web:session:"
        self._ttl = ttl
        self._clock = clock
        self._expires: dict[str, float] = {}  # what load() last read, for valid()

    async def open(self) -> str:
        """A new session id, stored before the login's answer goes out."""
        sid = secrets.token_urlsafe(32)
        await self._redis.set(self._prefix + sid, "1", px=int(self._ttl * 1000))
        self._expires[sid] = self._clock() + self._ttl
        return sid

    async def load(self, sid: str | None) -> None:
        """Read a session's remaining life (a logout or expiry elsewhere is seen here)."""
        if not sid:
            return
        left = await self._redis.pttl(self._prefix + sid)
        now = self._clock()
        if len(self._expires) > 10_000:
            self._expires = {k: v for k, v in self._expires.items() if v > now}
        if left > 0:
            self._expires[sid] = now + left / 1000
        else:
            self._expires.pop(sid, None)

    def valid(self, sid: str | None) -> bool:
        """True for a live session (as of the last :meth:`load` or :meth:`open`)."""
        return bool(sid) and self._expires.get(sid or "", 0.0) > self._clock()

    async def close(self, sid: str | None) -> None:
        """End a session in every process."""
        if sid:
            self._expires.pop(sid, None)
            await self._redis.delete(self._prefix + sid)
