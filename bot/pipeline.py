"""One job's path: validate -> prepare references -> reserve credits -> queue -> provider ->
store the turn -> reply.

:class:`~bot.service.ImagineService` decides what a call asks for (a new image, an edit of a
turn, a button) and hands it here. The reservation stays held, linked to the turn in the store,
until the result's delivery settles or refunds it; any failure before that refunds it at once.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from bot.batch import Batches, Plan
from bot.budget import reading
from bot.catalog import ModelSpec
from bot.choices import Choices
from bot.config import Settings
from bot.conversations import Conversations
from bot.delivery import Deliveries, refund_failed
from bot.domain import Actor, ImageData, ImageRequest, Options, Progress, Reply, Turn
from bot.errors import Banned, BotError, EmptyPrompt, NotFound, Refused, RefusedCharged, TooManyReferences
from bot.failover import Booking, Leg, Routing
from bot.groups import Groups, leveled
from bot.handoff import Handoffs
from bot.jobs import Scheduler
from bot.links import NO_LINKS, Linked, fetches_links, prepared
from bot.metrics import JobEvent, Metrics
from bot.present import Presenter
from bot.providers.base import HistoryTurn, ImageProvider, ProviderRequest, ProviderResult
from bot.quotas import Quotas
from bot.recipes import model_text, with_defaults
from bot.results import Results
from bot.storage.base import Store
from bot.styles import Styles

ProgressCallback = Callable[[Progress], Awaitable[None]]
PrepareReference = Callable[..., Awaitable[ImageData]]
T = TypeVar("T")


class JobPipeline:
    """Runs one job from its request to the reply (one call, or a batch of ``--n``)."""

    def __init__(self, *, settings: Settings, store: Store, quotas: Quotas,
                 conversations: Conversations, providers: dict[str, ImageProvider],
                 scheduler: Scheduler, presenter: Presenter,
                 prepare_reference: PrepareReference, metrics: Metrics, choices: Choices,
                 routing: Routing, groups: Groups, styles: Styles, deliveries: Deliveries,
                 batches: Batches, results: Results, handoffs: Handoffs) -> None:
        self.settings = settings
        self.store = store
        self.quotas = quotas
        self.conversations = conversations
        self.providers = providers
        self.scheduler = scheduler
        self.presenter = presenter
        self._prepare = prepare_reference
        self.metrics = metrics
        self.choices = choices
        self.routing = routing
        self.groups = groups
        self.styles = styles
        self.deliveries = deliveries
        self.batches = batches
        self.results = results
        self.handoffs = handoffs

    async def run(self, request: ImageRequest, parent: Turn | None,
                  progress: ProgressCallback | None, *, model: str | None = None,
                  size: str | None = None, aspect: str | None = None) -> Reply:
        """The job's reply; its outcome is counted in the metrics however it ends."""
        actor, chat = request.actor, request.chat
        event = JobEvent(job_id=secrets.token_hex(4), platform=actor.platform, chat=chat.chat_id,
                         user=actor.user_id, model=model or "", size=size or "", kind=request.kind)
        try:
            return await self._steps(request, parent, progress, event, model, size, aspect)
        except BaseException as exc:
            event.outcome = (exc.key.removeprefix("error.") if isinstance(exc, BotError)
                             else "cancelled" if isinstance(exc, asyncio.CancelledError)
                             else "internal")
            self.metrics.job(event)
            raise

    async def _steps(self, request: ImageRequest, parent: Turn | None,
                     progress: ProgressCallback | None, event: JobEvent, model: str | None,
                     size: str | None, aspect: str | None) -> Reply:
        actor, chat = request.actor, request.chat
        record = await self.store.get_user(actor.key)  # one read for the ban and the defaults
        if record.banned:
            raise Banned()
        prompt = request.prompt.strip()
        if not prompt:
            raise EmptyPrompt()
        opts = with_defaults(request.options, record.settings, request.kind)
        job = await self.groups.admitted(self.choices, record.settings, opts, chat, model=model,
                                         kept_size=size, kept_aspect=aspect, parent=parent)
        spec, size, aspect = job.spec, job.size, job.aspect
        opts = replace(opts, search=self.choices.search(record.settings, opts, spec))
        event.model, event.size = spec.name, size
        prior = (len(parent.output_hashes) if parent else 0) + len(request.links)
        if len(request.references) + prior > spec.max_references:
            raise TooManyReferences(len(request.references) + prior, spec.max_references, spec.name)
        limits = self.settings.limits
        legs = self.routing.plan(spec)  # the books charge the route that serves (Booking)
        refs, linked = await prepared(request, self._prepare, limits, by_url=(opts.n or 1) == 1
                                      and fetches_links(self.providers, [x.provider for x in legs]))
        history = await self.conversations.history(parent.id) if parent else ()
        if parent and not history:
            raise NotFound()
        price = self.quotas.price(legs[0].spec, size)
        n = opts.n or 1
        await self.groups.member_cap(job.group, actor, chat, price.credits * n, self.quotas)
        text = model_text(self.presenter.t, self.styles, prompt, opts, request.kind,
                          job.group.style)
        if n > 1:
            timeout = limits.timeout_4k_seconds if size == "4K" else limits.timeout_seconds
            made = await self.batches.run(Plan(
                actor=actor, chat=chat, prompt=prompt, text=text, kind=request.kind, spec=spec,
                size=size, aspect=aspect, opts=opts, refs=tuple(refs), history=history,
                parent_id=parent.id if parent else None, legs=legs, price=price,
                safety=job.level, timeout=timeout), n, event, progress)
            return await self.results.batch(actor, chat, made, spec, record.settings.locale,
                                            opts.vary)
        booking = await Booking.open(self.quotas, actor, chat, size, price, event)
        pending = booking.pending

        async def store(result: ProviderResult, reservation_id: str) -> Turn:
            return await self.conversations.record(
                actor=actor, chat=chat, prompt=prompt, model=spec.name, size=size, aspect=aspect,
                parent_id=parent.id if parent else None, inputs=[*refs, *await linked.stored()],
                outputs=result.images,
                provider_state=result.provider_state, kind=request.kind,
                credits=booking.price.credits, style=opts.style, negative=opts.negative,
                reservation_id=reservation_id)

        # Stored and leased inside the job, so its timeout, cancel and drain cover the wait.
        keep = functools.partial(self.deliveries.keep, pending, store)
        try:
            # The answer's bytes are leased before its body is read (bot.budget.answer_hook).
            with reading(self.deliveries.budget, pending):
                turn, result = await self._generate(actor, spec, tuple(refs), history, size,
                                                    aspect, progress, event, keep=keep, opts=opts,
                                                    prompt=text, legs=legs, linked=linked,
                                                    moving=booking.move, safety=job.level)
        except Refused as err:
            pending.release()
            leveled(err, job.level)  # the user is told the safety level that applied
            if self.settings.quota.charge_refusals:
                await self.quotas.settle(pending.reservation_id)
                raise leveled(RefusedCharged(), job.level) from None
            else:
                await self.quotas.refund(pending.reservation_id, "refused")
            raise
        except BaseException as exc:
            linked.cancel()
            await asyncio.shield(refund_failed(self.deliveries, pending, type(exc).__name__))
            raise
        try:
            return await self.results.single(actor, chat, turn, spec, result,
                                             record.settings.locale, opts.vary)
        except BaseException:
            await asyncio.shield(self.deliveries.undeliverable(turn.id))
            raise

    async def _generate(self, actor: Actor, spec: ModelSpec, refs: tuple[ImageData, ...],
                        history: tuple[HistoryTurn, ...], size: str, aspect: str,
                        progress: ProgressCallback | None, event: JobEvent, *, prompt: str,
                        keep: Callable[[ProviderResult], Awaitable[T]],
                        opts: Options, legs: tuple[Leg, ...],
                        moving: Callable[[Leg], Awaitable[None]], safety: str,
                        linked: Linked = NO_LINKS) -> T:
        limits = self.settings.limits
        timeout = limits.timeout_4k_seconds if size == "4K" else limits.timeout_seconds
        request = ProviderRequest(model_id=spec.id, prompt=prompt, references=refs,
                                  history=history, size=size, aspect=aspect, timeout=timeout,
                                  send_size=spec.send_size, thinking=opts.thinking,
                                  search=bool(opts.search), safety=safety, links=linked.urls)
        submitted = time.monotonic()

        async def answer() -> ProviderResult:
            started = time.monotonic()
            event.durations["queue"] = started - submitted
            try:
                return await self.routing.generate(legs, request, moving)
            finally:
                event.durations["upstream"] = time.monotonic() - started

        async def work() -> T:
            # No local names the answer: keep() alone holds its bytes, so it can let them go.
            return await keep(await answer())

        return await self.handoffs.run(self.scheduler, actor.key, work, timeout=timeout,
                                       on_progress=progress, job_id=event.job_id)
