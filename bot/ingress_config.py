"""Settings for running many receivers: Discord shards per process, the Telegram webhook owner.

Mixed into ``[discord]`` and ``[telegram]`` (bot/config_sections.py).
"""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator


class DiscordShards(BaseModel):
    """``[discord] shard_count`` / ``shard_ids``: which gateway shards this process runs."""

    #: Shards in all (every process names the same count); unset: one unsharded connection.
    shard_count: int | None = Field(default=None, ge=1, le=10_000)
    #: The shards this process connects (each shard in exactly one process); empty: all of them.
    shard_ids: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _shards(self) -> DiscordShards:
        if self.shard_ids and self.shard_count is None:
            raise ValueError("[discord] shard_ids needs shard_count")
        bad = [i for i in self.shard_ids if not 0 <= i < (self.shard_count or 0)]
        if bad:
            raise ValueError(f"[discord] shard_ids {bad} are outside 0..shard_count-1")
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("[discord] shard_ids names a shard twice")
        return self


class WebhookOwner(BaseModel):
    """``[telegram] webhook_owner``: whether this process calls setWebhook."""

    #: true: this process registers the webhook; false: it only receives; unset: with ``[redis]``
    #: the first process to take the lock registers it, without it this (only) process does.
    webhook_owner: bool | None = None
