"""Queued jobs another process finishes when this one dies (issue 14, many processes).

A job runs where it was received (that process holds its progress message, its interaction).
While it waits for a slot, its *ticket* (the call as the adapter made it, and where the result
goes as the adapter spells it) is kept in the store under this process's instance id; the job
starts only if this process can still take its ticket back. When a process dies its lease
lapses: the instance sweep refunds its reservations as before, and a process running the same
platform claims its tickets (:meth:`Handoffs.claim`) and makes each call again from the start
(checks, prices, reservation, queue), delivering where the ticket says. A process paused past
its lease finds its ticket claimed and drops the job, so no job is made twice. A process that
stops on purpose (a restart, a deploy: drain) keeps the tickets of the jobs it had waiting,
tells their users (:class:`~bot.errors.HandedOver`) and gives its lease up, so another process
makes them at once rather than after the lease.

The ticket reaches the queue through a context variable set around the one call that asked for
it (:meth:`Handoffs.calling`): the call's path (pipeline, batches) queues one job, and threading
an adapter's delivery target through every step between would couple them all to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from bot.blobs.store import BlobStore
from bot.domain import Action, Actor, ChatRef, Handoff, ImageLink, ImageRequest, MessageRef, Options
from bot.errors import (
    Cancelled,
    HandedOver,
    NotFound,
    QueueFull,
    StoreUnavailable,
    TooManyWaiting,
)
from bot.jobs import ProgressCallback, Scheduler
from bot.metrics import Metrics
from bot.quotas import Quotas
from bot.storage.base import Store
from bot.storage.handoff_port import Ticket

__all__ = ["Call", "Handoffs", "Ticket"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A resumed job refused because the dead process's queue entries are not swept yet is
#: admitted again this often, for at most this long.
READMIT_EVERY = 1.0
READMIT_FOR = 120.0


@dataclass(frozen=True, slots=True)
class Call:
    """One of the core's job calls, as an adapter made it: imagine, edit or act."""

    verb: str
    actor: Actor
    chat: ChatRef
    request: ImageRequest | None = None
    reply_to: MessageRef | None = None
    action: Action | None = None


@dataclass(frozen=True, slots=True)
class _Pending:
    call: Call
    handoff: Handoff
    ticket_id: str
    created_at: datetime
    resumed: bool


_PENDING: contextvars.ContextVar[_Pending | None] = contextvars.ContextVar("imagine_handoff",
                                                                          default=None)


class Handoffs:
    """Writes tickets around queued jobs, claims the dead's, and decodes them again."""

    def __init__(self, store: Store, quotas: Quotas, blobs: BlobStore, *, owner: str,
                 enabled: bool, max_age: timedelta = timedelta(hours=6),
                 sweep: Callable[[], Awaitable[Any]] | None = None,
                 metrics: Metrics | None = None) -> None:
        self._store = store
        self._quotas = quotas
        self._blobs = blobs
        self.owner = owner
        self.enabled = enabled
        self._max_age = max_age
        self._sweep = sweep
        self._metrics = metrics

    # ----- around one call ---------------------------------------------------------------------

    @contextlib.contextmanager
    def calling(self, call: Call, handoff: Handoff | None, *, ticket: Ticket | None = None
                ) -> Iterator[None]:
        """Within this block, the job the call queues is handed off (when enabled)."""
        pending = None
        if handoff is not None and self.enabled:
            pending = _Pending(call, handoff, ticket.id if ticket else secrets.token_hex(8),
                               ticket.created_at if ticket else datetime.now(UTC),
                               ticket is not None)
        token = _PENDING.set(pending)
        try:
            yield
        finally:
            _PENDING.reset(token)

    async def run(self, scheduler: Scheduler, owner: str, work: Callable[[], Awaitable[T]], *,
                  timeout: float, on_progress: ProgressCallback | None,  # noqa: ASYNC109
                  job_id: str | None) -> T:
        """``scheduler.run``, with the call's ticket kept while the job waits for its slot."""
        pending = _PENDING.get()
        if pending is None:
            return await scheduler.run(owner, work, timeout=timeout, on_progress=on_progress,
                                       job_id=job_id)
        _PENDING.set(None)  # one job per call
        ticket = Ticket(pending.ticket_id, pending.handoff.platform, pending.handoff.target(),
                        await self._encode(pending.call), pending.created_at)
        await self._store.hand_off(ticket, self.owner)
        started = False

        async def first() -> T:
            nonlocal started
            started = True
            if not await self._store.take_back(ticket.id, self.owner):
                # Stalled past the lease: another process took the job over and makes it.
                log.warning("job %s: claimed by another process while this one stalled; "
                            "dropped here", ticket.id)
                raise HandedOver()
            return await work()

        deadline = asyncio.get_running_loop().time() + READMIT_FOR
        kept = False
        try:
            while True:
                try:
                    return await scheduler.run(owner, first, timeout=timeout,
                                               on_progress=on_progress, job_id=job_id)
                except (TooManyWaiting, QueueFull):
                    # A resumed job meets the dead process's own entries until Redis sweeps them.
                    if not pending.resumed or asyncio.get_running_loop().time() > deadline:
                        raise
                except Cancelled:
                    if started or scheduler.accepting:
                        raise
                    # This process stops (a restart, a deploy) while the job waits: its ticket
                    # stays, and another process makes it once this one's lease is given up.
                    # Written again: where the result goes may say more now (a status message
                    # sent since the job was queued, which the other process then edits).
                    kept = True
                    with contextlib.suppress(StoreUnavailable):
                        await self._store.hand_off(dataclasses.replace(
                            ticket, target=pending.handoff.target()), self.owner)
                    raise HandedOver() from None
                await asyncio.sleep(READMIT_EVERY)
                if self._sweep is not None:
                    await self._sweep()
        finally:
            if not started and not kept:
                with contextlib.suppress(StoreUnavailable):
                    await asyncio.shield(self._store.take_back(ticket.id, self.owner))

    # ----- another process's tickets -----------------------------------------------------------

    async def claim(self, platform: str) -> list[tuple[Ticket, Actor]]:
        """``platform``'s tickets of processes that are gone (and who asked), now this one's."""
        if not self.enabled:
            return []
        claimed = await self._store.claim_handoffs(platform, self.owner)
        if not claimed:
            return []
        # Their owners' holds go first (the calls reserve anew; the same lapsed lease decides
        # both), and their queue entries, which count against their users until swept.
        await self._quotas.refund_stale()
        if self._sweep is not None:
            await self._sweep()
        fresh = []
        for ticket in claimed:
            try:
                actor = Actor(**json.loads(ticket.call)["actor"])
            except (ValueError, KeyError, TypeError):
                log.error("job %s: its ticket cannot be read; given up", ticket.id)
                actor = None
            if actor is None or datetime.now(UTC) - ticket.created_at > self._max_age:
                if actor is not None:
                    log.info("job %s: queued %s ago by a stopped process; given up", ticket.id,
                             datetime.now(UTC) - ticket.created_at)
                await self._store.drop_handoff(ticket.id)
                self._count(platform, "given_up")
            else:
                fresh.append((ticket, actor))
                self._count(platform, "taken_over")
        if fresh:
            log.warning("taking over %d queued %s job(s) of a stopped process", len(fresh),
                        platform)
        return fresh

    def _count(self, platform: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.handoffs.labels(platform, outcome).inc()

    async def release(self, ticket: Ticket) -> None:
        """A resumed call ended before its job was queued (refused, failed): forget its ticket."""
        with contextlib.suppress(StoreUnavailable):
            await self._store.take_back(ticket.id, self.owner)

    async def call_of(self, ticket: Ticket) -> Call:
        """The call a ticket keeps, its reference images loaded again (NotFound: they are gone)."""
        data = json.loads(ticket.call)
        actor, chat = Actor(**data["actor"]), ChatRef(**data["chat"])
        request = None
        if data.get("request") is not None:
            raw = data["request"]
            refs = await self._blobs.get_many(tuple(raw["refs"])) if raw["refs"] else ()
            if refs is None:
                raise NotFound()
            request = ImageRequest(
                actor=actor, chat=chat, prompt=raw["prompt"], references=tuple(refs),
                options=Options(**{**raw["options"], "negative": tuple(raw["options"]["negative"])}),
                kind=raw["kind"], parent_turn_id=raw["parent_turn_id"],
                links=tuple(ImageLink(**link) for link in raw["links"]))
        reply_to = MessageRef(**data["reply_to"]) if data.get("reply_to") else None
        action = Action(**data["action"]) if data.get("action") else None
        return Call(data["verb"], actor, chat, request, reply_to, action)

    async def _encode(self, call: Call) -> str:
        """The call as JSON; its reference images go to the image store (by digest)."""
        request = None
        if call.request is not None:
            r = call.request
            request = {"prompt": r.prompt, "refs": [await self._blobs.put(i) for i in r.references],
                       "options": dataclasses.asdict(r.options), "kind": r.kind,
                       "parent_turn_id": r.parent_turn_id,
                       "links": [dataclasses.asdict(link) for link in r.links]}
        return json.dumps({
            "verb": call.verb, "actor": dataclasses.asdict(call.actor),
            "chat": dataclasses.asdict(call.chat), "request": request,
            "reply_to": dataclasses.asdict(call.reply_to) if call.reply_to else None,
            "action": dataclasses.asdict(call.action) if call.action else None})
