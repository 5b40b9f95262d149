"""``[redis]``: work, send budgets, albums and console sessions shared by many processes."""

from __future__ import annotations

from pydantic import Field, field_validator

from bot.config_sections import _Section


class RedisSection(_Section):
    """``[redis]``: unset ``url`` keeps everything in this process (one process, the default)."""

    #: ``redis://host:6379/0`` (``rediss://`` for TLS); a password in it is never logged.
    url: str | None = None
    #: Every key and channel starts with this, so several bots can share one server.
    prefix: str = Field(default="imagine:", min_length=1, max_length=64)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            # The message never quotes the value: it may hold the password.
            raise ValueError("[redis] url must start with redis://, rediss:// or unix://")
        return value.strip()
