"""Delivery as a core protocol: a result's images fitted to the platform; sent() settles, else refund.

``async with deliveries.open(reply, caps) as out:`` gives the result's images already fitted to
the adapter's declared :class:`~bot.domain.Capabilities`; the adapter only uploads them and calls
``await out.sent(messages)``. Leaving the block without that, or with an exception, refunds the
result exactly once. Money never depends on an adapter remembering a call: the reservation is
linked to the turn in the store (``reservations.turn_id``), and settling or refunding reads it
from there, so any process can close it. What stays in this process is only bookkeeping that
dies with it: the job's log line and the byte lease on the :class:`~bot.budget.DeliveryBudget`.
A delivery the platform refuses for now is parked (:meth:`Delivery.park`, bot/outbox.py): a
shutdown then leaves it held for the next start instead of refunding it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

from bot import images
from bot.budget import DeliveryBudget, Lease
from bot.conversations import Conversations
from bot.domain import Capabilities, ImageData, MessageRef, Reply, Turn
from bot.errors import NotFound
from bot.metrics import JobEvent, Metrics
from bot.outbox import Outbox, Parked
from bot.providers.base import ProviderResult
from bot.quotas import Quotas
from bot.storage.base import Store

__all__ = ["Deliveries", "Delivery", "Fitted", "Parked", "Pending", "refund_failed"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Pending:
    """One job on its way to the user: its reservation, job log line and byte lease."""

    reservation_id: str
    event: JobEvent
    turn_id: str | None = None
    lease: Lease | None = None

    def release(self) -> None:
        """Give the result's bytes back to the budget (delivery is over, either way)."""
        if self.lease is not None:
            self.lease.release()


@dataclass(frozen=True, slots=True)
class Fitted:
    """One result image as the platform shows it, and the original to send as a file too."""

    photo: ImageData
    original: ImageData | None = None
    #: The model's image: its pixel size and bytes (for a note beside the original file).
    width: int = 0
    height: int = 0
    size_bytes: int = 0


@dataclass(slots=True)
class Delivery:
    """An open delivery: ``items`` to upload; :meth:`sent` settles the credits."""

    reply: Reply
    caps: Capabilities
    items: tuple[Fitted, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    #: Turns not settled yet (a batch has one per candidate); refunded when the block ends.
    open_turns: list[str] = field(default_factory=list)
    _settle: Callable[[str, Sequence[MessageRef], Mapping[str, float]], Awaitable[None]] | None = None
    _outbox: Outbox | None = None
    #: Parked in the outbox (the platform refused it for now): a shutdown keeps it held.
    parked: bool = False

    @property
    def turn_id(self) -> str:
        """The turn being delivered (a batch's first candidate)."""
        return self.reply.turn_id or ""

    @property
    def delivered(self) -> bool:
        """True once every turn was settled (nothing left to refund)."""
        return not self.open_turns

    async def park(self, platform: str, target: str) -> None:
        """The platform refuses the result for now: keep it across restarts until sent or given up.

        ``target`` is where it goes, as the adapter spells it (JSON; :meth:`Deliveries.claim`
        gives it back).
        """
        if not self.parked and self._outbox is not None:
            await self._outbox.park(self.reply, platform, target)
            self.parked = True

    async def unpark(self) -> None:
        """Sent again now: out of the outbox, so a stop meanwhile refunds it, never sends it twice."""
        if self.parked and self._outbox is not None:
            await self._outbox.unpark(self.turn_id)
            self.parked = False

    async def file(self, index: int) -> ImageData:
        """Image ``index`` fitted as a file (a photo the platform refused goes out this way)."""
        image = self.reply.images[index]
        budget = self.caps.document_budget
        return image if budget is None else await images.fit(image, budget)

    async def sent(self, messages: Sequence[MessageRef],
                   timings: Mapping[str, float] | None = None) -> None:
        """The messages showing the whole result were sent: bind them and settle every turn."""
        if not messages:
            return
        for n, turn_id in enumerate(list(self.open_turns)):
            # One message shows a batch: it is bound to the first candidate (a reply edits it).
            await self._close(turn_id, messages if n == 0 else (), timings)

    async def sent_each(self, messages: Sequence[Sequence[MessageRef]],
                        timings: Mapping[str, float] | None = None) -> None:
        """Item ``i`` arrived as ``messages[i]`` (empty: it did not; it is refunded on exit)."""
        candidates = self.reply.candidates or (self.turn_id,)
        for turn_id, shown in zip(candidates, messages, strict=False):
            if shown and turn_id in self.open_turns:
                await self._close(turn_id, shown, timings)

    async def _close(self, turn_id: str, messages: Sequence[MessageRef],
                     timings: Mapping[str, float] | None) -> None:
        """Settle one turn; it stays open (refunded when the block ends) if that raises."""
        assert self._settle is not None
        await self._settle(turn_id, messages, {**self.timings, **(timings or {})})
        self.open_turns.remove(turn_id)


async def fit_all(reply: Reply, caps: Capabilities) -> tuple[Fitted, ...]:
    """Every image fitted to the photo budget, plus the original where it should go too."""
    out: list[Fitted] = []
    for image in reply.images[:caps.files_per_message]:
        width, height = image.width, image.height
        if caps.photo_budget is None:
            out.append(Fitted(image, None, width, height, image.size_bytes))
            continue
        photo = await images.fit(image, caps.photo_budget)
        original = None
        if caps.document_budget is not None:
            if not width or not height:
                _, width, height = await images.probe(image.data)
            big = caps.original_from_side is not None and max(width, height) >= caps.original_from_side
            if photo is not image or big:
                original = await images.fit(image, caps.document_budget)
        out.append(Fitted(photo, original, width, height, image.size_bytes))
    return tuple(out)


class Deliveries:
    """Results between the model's answer and the platform: stored, leased, settled or refunded."""

    def __init__(self, *, store: Store, quotas: Quotas, conversations: Conversations,
                 metrics: Metrics, budget: DeliveryBudget) -> None:
        self.store = store
        self.quotas = quotas
        self.conversations = conversations
        self.metrics = metrics
        self.budget = budget
        #: Results the platform refused for now, kept across restarts (bot/outbox.py).
        self.outbox = Outbox(store, conversations, quotas.owner)
        #: This process's job log lines and byte leases, by turn id: bookkeeping only, never
        #: what decides money (that is the reservation in the store).
        self.local: dict[str, Pending] = {}

    async def keep(self, pending: Pending,
                   store: Callable[[ProviderResult, str], Awaitable[Turn]],
                   result: ProviderResult) -> tuple[Turn, ProviderResult]:
        """Store the result linked to its reservation (``store``), then lease budget for its images.

        Waits without the images while the budget is spent (they are in the blob store). The
        caller must not keep its own reference to ``result``: this frame lets the bytes go.
        """
        turn = await store(result, pending.reservation_id)
        pending.turn_id = turn.id
        self.local[turn.id] = pending
        need = sum(image.size_bytes for image in result.images)
        lease = pending.lease  # taken before the answer was read (bot.budget.answer_hook)
        if lease is not None and lease.held and lease.size >= need:
            lease.shrink(need)
            return turn, result
        pending.release()
        pending.lease = self.budget.try_acquire(need)
        if pending.lease is not None:
            return turn, result
        result = replace(result, images=())
        started = time.monotonic()
        pending.lease = await self.budget.acquire(need)
        pending.event.durations["hold"] = time.monotonic() - started
        images_ = await self.conversations.outputs(turn)
        if images_ is None:
            raise NotFound()
        return turn, replace(result, images=images_)

    @asynccontextmanager
    async def open(self, reply: Reply, caps: Capabilities,
                   parked: bool = False) -> AsyncIterator[Delivery]:
        """Fit ``reply``'s images to ``caps``; settle on ``sent()``, refund on anything else.

        ``parked``: a result :meth:`reload` gave back, still in the outbox (not written again).
        """
        if reply.turn_id is None or not reply.images:
            raise ValueError("only a result with images is delivered")
        out = Delivery(reply, caps, open_turns=list(reply.candidates or (reply.turn_id,)),
                       _settle=self.bind, _outbox=self.outbox, parked=parked)
        reason, kept = "undeliverable", False
        try:
            started = time.monotonic()
            out.items = await fit_all(reply, caps)
            out.timings["fit"] = time.monotonic() - started
            yield out
        except BaseException as exc:
            reason = f"undeliverable: {type(exc).__name__}"
            # Stopped while the platform made it wait: held for the next start, not refunded
            # (unless it was settled on the way out: it arrived after all).
            kept = out.parked and isinstance(exc, asyncio.CancelledError) and not out.delivered
            raise
        finally:
            if kept:
                self._keep(out)
            else:
                await asyncio.shield(self._close_open(out, reason))

    async def _close_open(self, out: Delivery, reason: str) -> None:
        """Refund what was not sent; a parked result leaves the outbox, sent or not."""
        try:
            for turn_id in out.open_turns:
                await self.undeliverable(turn_id, reason)
        finally:
            if out.parked:
                await self.outbox.unpark(out.turn_id)

    def _keep(self, out: Delivery) -> None:
        """A parked delivery stopped by shutdown: its reservations stay held, in the outbox."""
        for turn_id in out.open_turns:
            pending = self.local.pop(turn_id, None)
            if pending is not None:
                pending.release()
        log.info("result %s kept in the outbox for the next start", out.turn_id)

    async def claim(self, platform: str) -> list[Parked]:
        """``platform``'s parked results whose process is gone, now this one's to send again."""
        return await self.outbox.claim(platform)

    async def reload(self, parked: Parked, patience: float) -> Reply | None:
        """A claimed result with its images, to deliver again; None when it was refunded instead.

        It is refunded when its ``patience`` (seconds) is spent or its images are gone.
        """
        reply = await self.outbox.load(parked) if parked.left(patience) > 0 else None
        if reply is None:
            try:
                for turn_id in parked.turn_ids:
                    await self.undeliverable(turn_id, "undeliverable: waited too long")
            finally:
                await self.outbox.unpark(parked.delivery)
        return reply

    async def bind(self, turn_id: str, messages: Sequence[MessageRef],
                   timings: Mapping[str, float] | None = None) -> None:
        """The messages showing a turn were sent: bind them and settle its reservation."""
        pending = self.local.get(turn_id)
        if pending is not None:
            pending.release()  # uploaded: the bytes are no longer needed, whatever follows
        await self.conversations.bind(turn_id, messages)  # none: settled, shown by another's
        reservation_id = await self._reservation_id(turn_id, pending)
        if reservation_id is not None:
            await self.quotas.settle(reservation_id)
        pending = self.local.pop(turn_id, None)
        if pending:
            pending.event.durations.update(timings or {})
            self.metrics.settled(pending.event.credits, pending.event.usd)
            self.metrics.job(pending.event)

    async def undeliverable(self, turn_id: str, reason: str = "undeliverable") -> None:
        """The result could not be delivered: refund it (once) and drop the turn."""
        pending = self.local.pop(turn_id, None)
        try:
            reservation_id = await self._reservation_id(turn_id, pending)
            if reservation_id is not None and await self.quotas.refund(reservation_id, reason) and (
                    pending):
                pending.event.outcome = "undeliverable"
                self.metrics.delivery_failures.labels(pending.event.platform).inc()
                self.metrics.job(pending.event)
        finally:
            if pending:
                pending.release()
            await self.conversations.delete(turn_id)

    async def _reservation_id(self, turn_id: str, pending: Pending | None) -> str | None:
        """The reservation paying for ``turn_id``: this process's own record, else the store's."""
        if pending is not None:
            return pending.reservation_id  # the same id the store links (one query saved)
        held = await self.store.reservation_of(turn_id)
        return held.id if held is not None else None

    async def abandon(self, turn_id: str, reason: str) -> None:
        """The job failed after its result was stored (timeout, cancel): refund, drop, release."""
        pending = self.local.pop(turn_id, None)
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
