"""The Redis client the adapters' shared state uses (``[redis] url``; bot/leader.py for roles)."""

from __future__ import annotations

from redis.asyncio import Redis


def connect(url: str) -> Redis:
    """An asyncio client answering str (redis-py)."""
    return Redis.from_url(url, decode_responses=True, socket_connect_timeout=5,
                          health_check_interval=30)
