"""The Adapter protocol: what ``imagine-bot run`` starts, watches and stops (adapters/cli/runner.py).

What a platform can show is declared with ``bot.api.Capabilities`` (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
from typing import Protocol


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
