"""The Adapter protocol and what each platform can show (Capabilities)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from bot.images import Budget


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a platform accepts, so the renderer can degrade instead of failing."""

    upload_limit: int
    caption_limit: int
    files_per_message: int
    buttons: bool
    photo_budget: Budget
    document_budget: Budget | None = None


class Adapter(Protocol):
    """A platform connection: runs until ``stop`` is set, then closes cleanly."""

    name: str

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve events until ``stop`` is set, then disconnect."""
        ...

    @property
    def connected(self) -> bool:
        """True while the platform connection is up (for /readyz)."""
        ...
