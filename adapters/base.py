"""The Adapter protocol: what ``imagine-bot run`` starts, watches and stops (adapters/cli/runner.py).

What a platform can show is declared with ``bot.api.Capabilities`` (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any, Protocol

#: After the grace, how long cancelled work gets to finish its cleanup (refund, keep, land).
CANCEL_GRACE = 5.0


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


async def drain(tasks: Collection[asyncio.Task[Any]], grace: float) -> None:
    """Wait up to ``grace`` s for ``tasks``, then cancel what is left and let it clean up.

    A delivery cancelled here refunds its result, or keeps it for the next start when the
    platform had made it wait (bot/outbox.py).
    """
    if not tasks:
        return
    _, left = await asyncio.wait(tasks, timeout=grace)
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=CANCEL_GRACE)
