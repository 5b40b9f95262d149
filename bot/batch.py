"""Batches (``--n 2..4``): several candidates from one request, Midjourney style.

Every candidate is an ordinary job for the books: its own reservation, taken for all N before
any is generated (all or nothing), its own turn, and its own settle or refund. The batch runs as
ONE job in the user's queue (so ``per_user_concurrency = 1`` still admits it) that makes N
upstream calls at once. A candidate that fails is refunded at once; the others are delivered
together and the caption says how many failed. Buttons per candidate: U (the next size up) and V
(variations), plus one Reroll for the whole batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from bot.budget import reading
from bot.catalog import ModelSpec
from bot.conversations import Conversations
from bot.delivery import Deliveries, refund_failed
from bot.domain import Action, Actor, ChatRef, ImageData, Options, RequestKind, Turn
from bot.errors import BotError, InternalError, QuotaExceeded
from bot.failover import Booking, Leg, Routing
from bot.handoff import Handoffs
from bot.jobs import ProgressCallback, Scheduler
from bot.metrics import JobEvent
from bot.providers.base import HistoryTurn, ProviderRequest, ProviderResult
from bot.quotas import Price, Quotas

__all__ = ["Batches", "Plan"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Plan:
    """An admitted request: what to make, where, at what price (the job path's checks passed)."""

    actor: Actor
    chat: ChatRef
    prompt: str  # the user's words (stored and shown)
    text: str  # what the model gets (style, exclusions)
    kind: RequestKind
    spec: ModelSpec
    size: str
    aspect: str
    opts: Options
    refs: tuple[ImageData, ...]
    history: tuple[HistoryTurn, ...]
    parent_id: str | None
    legs: tuple[Leg, ...]
    price: Price
    safety: str
    timeout: float


@dataclass(frozen=True, slots=True)
class Made:
    """The candidates a batch delivered and how many failed (all refunded)."""

    turns: tuple[Turn, ...]
    results: tuple[ProviderResult, ...]
    failed: int


class Batches:
    """Runs a batch: reserve N, generate N at once as one queued job, keep what succeeded."""

    def __init__(self, *, quotas: Quotas, deliveries: Deliveries, conversations: Conversations,
                 routing: Routing, scheduler: Scheduler, handoffs: Handoffs) -> None:
        self.quotas = quotas
        self.deliveries = deliveries
        self.conversations = conversations
        self.routing = routing
        self.scheduler = scheduler
        self.handoffs = handoffs

    async def run(self, plan: Plan, n: int, event: JobEvent,
                  progress: ProgressCallback | None) -> Made:
        """Make ``n`` candidates; BotError when none succeeded (everything refunded)."""
        bookings = await self._book(plan, n, event)
        request = ProviderRequest(
            model_id=plan.spec.id, prompt=plan.text, references=plan.refs, history=plan.history,
            size=plan.size, aspect=plan.aspect, timeout=plan.timeout, send_size=plan.spec.send_size,
            thinking=plan.opts.thinking, search=bool(plan.opts.search), safety=plan.safety)

        async def one(booking: Booking) -> tuple[Turn, ProviderResult]:
            async def store(result: ProviderResult, reservation_id: str) -> Turn:
                return await self.conversations.record(
                    actor=plan.actor, chat=plan.chat, prompt=plan.prompt, model=plan.spec.name,
                    size=plan.size, aspect=plan.aspect, parent_id=plan.parent_id, inputs=plan.refs,
                    outputs=result.images, provider_state=result.provider_state, kind=plan.kind,
                    credits=booking.price.credits, style=plan.opts.style,
                    negative=plan.opts.negative, reservation_id=reservation_id)

            started = time.monotonic()
            with reading(self.deliveries.budget, booking.pending):
                result = await self.routing.generate(plan.legs, request, booking.move)
            booking.pending.event.durations["upstream"] = time.monotonic() - started
            return await self.deliveries.keep(booking.pending, store, result)

        async def work() -> list[tuple[Turn, ProviderResult] | BaseException]:
            return await asyncio.gather(*(one(b) for b in bookings), return_exceptions=True)

        try:
            outcomes = await self.handoffs.run(self.scheduler, plan.actor.key, work,
                                               timeout=plan.timeout, on_progress=progress,
                                               job_id=event.job_id)
        except BaseException as exc:
            for booking in bookings:
                await asyncio.shield(refund_failed(self.deliveries, booking.pending,
                                                   type(exc).__name__))
            raise
        made: list[tuple[Turn, ProviderResult]] = []
        errors: list[BaseException] = []
        for booking, outcome in zip(bookings, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                errors.append(outcome)
                await asyncio.shield(refund_failed(self.deliveries, booking.pending,
                                                   type(outcome).__name__))
            else:
                made.append(outcome)
        if not made:
            raise _first_error(errors)
        for error in errors:
            log.info("batch %s: a candidate failed (%s)", event.job_id, type(error).__name__)
        return Made(tuple(t for t, _ in made), tuple(r for _, r in made), len(errors))

    async def _book(self, plan: Plan, n: int, event: JobEvent) -> list[Booking]:
        """Hold credits for all ``n`` candidates, or for none (QuotaExceeded)."""
        bookings: list[Booking] = []
        try:
            for i in range(n):
                own = replace(event, job_id=f"{event.job_id}.{i + 1}", durations={})
                bookings.append(await Booking.open(self.quotas, plan.actor, plan.chat, plan.size,
                                                   plan.price, own))
        except BaseException as exc:
            for booking in bookings:
                await asyncio.shield(self.quotas.refund(booking.pending.reservation_id,
                                                        "batch not admitted"))
            if isinstance(exc, QuotaExceeded):  # told as the whole batch's cost, not one's
                p, held = exc.params, len(bookings) * plan.price.credits
                raise QuotaExceeded(str(p["window"]), float(p["left"]) + held,
                                    n * plan.price.credits, p.get("resets_at")) from None
            raise
        return bookings


def _first_error(errors: list[BaseException]) -> BaseException:
    """What to tell the user when every candidate failed: the first BotError, else internal."""
    for error in errors:
        if isinstance(error, BotError):
            return error
    for error in errors:
        if isinstance(error, asyncio.CancelledError):
            return error
    return InternalError()


def batch_actions(turns: tuple[Turn, ...], upscale: Callable[[Turn], Action | None],
                  vary: str | None = None) -> tuple[Action, ...]:
    """U1..Un (the next size up, when the model has one), V1..Vn, and one Reroll for all."""
    ups = [replace(a, index=i + 1) for i, t in enumerate(turns) if (a := upscale(t)) is not None]
    varies = [Action("variations", t.id, cost=t.credits, index=i + 1, vary=vary)
              for i, t in enumerate(turns)]
    reroll = Action("reroll", turns[0].id, cost=sum(t.credits for t in turns), batch=len(turns))
    return (*ups, *varies, reroll)
