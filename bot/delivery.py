"""Results between the model's answer and the adapter's report: credits held, bytes budgeted.

A finished job's result is stored (its images go to the blob store), then it waits for a lease
on the :class:`~bot.budget.DeliveryBudget` for its image bytes, without holding them while it
waits. The adapter then reports the delivery (:meth:`Deliveries.bind` settles the credits) or
its failure (:meth:`Deliveries.undeliverable` refunds them); either way the lease is released.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from bot.budget import DeliveryBudget, Lease
from bot.conversations import Conversations
from bot.domain import MessageRef, Turn
from bot.errors import NotFound
from bot.metrics import JobEvent, Metrics
from bot.providers.base import ProviderResult
from bot.quotas import Quotas

__all__ = ["Deliveries", "Pending", "refund_failed"]


@dataclass(slots=True)
class Pending:
    """One job's result on its way to the user: its reservation, job log line and lease."""

    reservation_id: str
    event: JobEvent
    turn_id: str | None = None
    lease: Lease | None = None

    def release(self) -> None:
        """Give the result's bytes back to the budget (delivery is over, either way)."""
        if self.lease is not None:
            self.lease.release()


class Deliveries:
    """Results awaiting delivery, by turn id, and the byte budget they hold."""

    def __init__(self, *, quotas: Quotas, conversations: Conversations, metrics: Metrics,
                 budget: DeliveryBudget) -> None:
        self.quotas = quotas
        self.conversations = conversations
        self.metrics = metrics
        self.budget = budget
        self.pending: dict[str, Pending] = {}

    async def keep(self, pending: Pending, store: Callable[[ProviderResult], Awaitable[Turn]],
                   result: ProviderResult) -> tuple[Turn, ProviderResult]:
        """Store the result, then lease budget for its images, waiting without them if spent.

        Once stored, :meth:`abandon` or the adapter's report ends it, whatever happens. The
        caller must not keep its own reference to ``result``: this frame lets the bytes go.
        """
        turn = await store(result)
        pending.turn_id = turn.id
        self.pending[turn.id] = pending
        need = sum(image.size_bytes for image in result.images)
        lease = pending.lease  # taken before the answer was read (bot.budget.answer_hook)
        if lease is not None and lease.held and lease.size >= need:
            lease.shrink(need)
            return turn, result
        pending.release()
        pending.lease = self.budget.try_acquire(need)
        if pending.lease is not None:
            return turn, result
        # The images are in the blob store: wait without them, read them back once it is our turn.
        result = replace(result, images=())
        started = time.monotonic()
        pending.lease = await self.budget.acquire(need)
        pending.event.durations["hold"] = time.monotonic() - started
        images = await self.conversations.outputs(turn)
        if images is None:
            raise NotFound()
        return turn, replace(result, images=images)

    async def bind(self, turn_id: str, messages: Sequence[MessageRef],
                   timings: Mapping[str, float] | None = None) -> None:
        """The messages showing a turn were sent: bind them and settle the credits."""
        pending = self.pending.get(turn_id)
        if pending is not None:
            pending.release()  # uploaded: the bytes are no longer needed, whatever follows
        await self.conversations.bind(turn_id, messages)
        pending = self.pending.pop(turn_id, None)
        if pending:
            await self.quotas.settle(pending.reservation_id)
            pending.event.durations.update(timings or {})
            self.metrics.settled(pending.event.credits, pending.event.usd)
            self.metrics.job(pending.event)

    async def undeliverable(self, turn_id: str) -> None:
        """The result could not be delivered: refund it and drop the turn."""
        pending = self.pending.pop(turn_id, None)
        if pending:
            pending.release()
            await self.quotas.refund(pending.reservation_id, "undeliverable")
            pending.event.outcome = "undeliverable"
            self.metrics.delivery_failures.labels(pending.event.platform).inc()
            self.metrics.job(pending.event)
        await self.conversations.delete(turn_id)

    async def abandon(self, turn_id: str, reason: str) -> None:
        """The job failed after its result was stored (timeout, cancel): refund, drop, release."""
        pending = self.pending.pop(turn_id, None)
        try:
            if pending:
                pending.release()
                await self.quotas.refund(pending.reservation_id, reason)
        finally:
            await self.conversations.delete(turn_id)


async def refund_failed(deliveries: Deliveries, pending: Pending, reason: str) -> None:
    """A failed job: refund its reservation, or abandon its stored result if it got that far."""
    pending.release()
    if pending.turn_id is not None:
        await deliveries.abandon(pending.turn_id, reason)
    else:
        await deliveries.quotas.refund(pending.reservation_id, reason)

