"""The machine's Redis for tests: a client on a key prefix of this test's own, cleaned after.

``IMAGINE_TEST_REDIS_URL`` (default the local server). Without a server the test skips, saying
why; ``IMAGINE_REQUIRE_SERVICES=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.store_engines import service_missing

REDIS_URL = os.environ.get("IMAGINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def new_prefix() -> str:
    """A key prefix no other test uses."""
    return f"imagine-test:{secrets.token_hex(6)}:"


def client() -> Redis:
    """A decoding client on the test server."""
    return Redis.from_url(REDIS_URL, decode_responses=True, socket_connect_timeout=2)


async def clean(prefix: str) -> None:
    """Delete every key under ``prefix``."""
    redis = client()
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


@asynccontextmanager
async def redis_prefix() -> AsyncIterator[str]:
    """A fresh prefix on a reachable server (skips otherwise); its keys deleted after."""
    redis = client()
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        service_missing(f"Redis is not reachable at {REDIS_URL} ({type(exc).__name__}: {exc}); "
                        "set IMAGINE_TEST_REDIS_URL to test it")
    finally:
        await redis.aclose()
    prefix = new_prefix()
    try:
        yield prefix
    finally:
        await clean(prefix)
