"""The Store port's part for handing queued jobs over to another process (bot/handoff.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Ticket:
    """A queued job another process may finish: what was asked, and where the result goes."""

    id: str
    platform: str
    #: Where the result goes, as the adapter spells it (JSON).
    target: str
    #: What was asked (JSON, bot/handoff.py; reference images by digest in the image store).
    call: str
    created_at: datetime


class HandoffStore(Protocol):
    """Tickets of queued jobs (migration 0010; both engines)."""

    async def hand_off(self, ticket: Ticket, owner: str) -> None:
        """Keep ``ticket`` as ``owner``'s (again: the owner and call are replaced)."""
        ...

    async def take_back(self, ticket_id: str, owner: str) -> bool:
        """Forget the ticket if ``owner`` still holds it; False when another process claimed it."""
        ...

    async def claim_handoffs(self, platform: str, owner: str) -> list[Ticket]:
        """``platform``'s tickets whose owner's lease lapsed (or whose process is gone), now
        ``owner``'s; of two processes claiming at once, each ticket goes to one."""
        ...

    async def drop_handoff(self, ticket_id: str) -> None:
        """Forget a ticket whoever holds it (given up)."""
        ...
