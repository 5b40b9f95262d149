"""The core's job path: imagine, edit, act (buttons), delete, deliver, usage, forget.

Every job follows one path: validate -> prepare references -> reserve credits -> queue ->
provider -> store the turn -> reply. The reservation stays held, linked to the turn in the
store, until the result's delivery (:meth:`ImagineService.delivery`) settles or refunds it; any
failure before that refunds it at once. Crashes leave it held, and start-up refunds it. Every
user-facing call raises :class:`~bot.errors.BotError` (one contract; see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import TypeVar

from bot.batch import Batches, Plan
from bot.budget import DeliveryBudget, reading
from bot.catalog import Lineup, ModelSpec
from bot.choices import Choices
from bot.config import Settings
from bot.conversations import Conversations
from bot.delivery import Deliveries, Delivery, refund_failed
from bot.domain import (
    Action,
    Actor,
    Capabilities,
    ChatRef,
    ImageData,
    ImageRequest,
    MessageRef,
    Options,
    Progress,
    Reply,
    Turn,
    Usage,
)
from bot.errors import (
    Banned,
    BotError,
    EmptyPrompt,
    InternalError,
    InvalidOption,
    NoReference,
    NotFound,
    NotOwner,
    Refused,
    RefusedCharged,
    TooManyReferences,
)
from bot.failover import Booking, Leg, Routing
from bot.groups import Groups, leveled
from bot.jobs import Scheduler
from bot.links import NO_LINKS, Linked, fetches_links, prepared
from bot.messages import normalize_locale
from bot.metrics import JobEvent, Metrics
from bot.present import Presenter
from bot.providers.base import HistoryTurn, ImageProvider, ProviderRequest, ProviderResult
from bot.quotas import Quotas
from bot.recipes import model_text, pressed, with_defaults
from bot.results import Results
from bot.storage.base import Store
from bot.styles import Styles

log = logging.getLogger(__name__)
ProgressCallback = Callable[[Progress], Awaitable[None]]
PrepareReference = Callable[..., Awaitable[ImageData]]
T = TypeVar("T")


class ImagineService:
    """The core's one entry point for adapters."""

    def __init__(self, *, settings: Settings, store: Store, quotas: Quotas,
                 conversations: Conversations, providers: dict[str, ImageProvider],
                 scheduler: Scheduler, presenter: Presenter,
                 prepare_reference: PrepareReference, metrics: Metrics,
                 lineup: Lineup | None = None, budget: DeliveryBudget | None = None) -> None:
        self.settings = settings
        self.store = store
        self.quotas = quotas
        self.conversations = conversations
        self.providers = providers
        self.scheduler = scheduler
        self.presenter = presenter
        self.lineup = lineup or Lineup(settings.catalog())
        self.catalog: dict[str, ModelSpec] = self.lineup.models
        self.choices = Choices(settings, self.lineup)
        self.routing = Routing(settings, providers, metrics)  # failover across routes
        self.groups = Groups(settings, store, self.lineup)  # /config: a group narrows the rest
        self.styles = Styles.of(settings.styles)
        self._prepare = prepare_reference
        self.metrics = metrics
        budget = budget or DeliveryBudget(int(settings.limits.delivery_budget_mb * 1_000_000))
        self.deliveries = Deliveries(store=store, quotas=quotas, conversations=conversations,
                                     metrics=metrics, budget=budget)
        self.batches = Batches(quotas=quotas, deliveries=self.deliveries,
                               conversations=conversations, routing=self.routing,
                               scheduler=scheduler)
        self.results = Results(settings, quotas, presenter, self.choices)
        self._busy: set[asyncio.Task[object]] = set()  # requests that may still move credits

    # ----- identity, language, options -------------------------------------------------------

    def is_admin(self, actor: Actor) -> bool:
        """Admins by config or as the adapter vouched (e.g. Discord Manage Server)."""
        return actor.is_admin or self.settings.is_admin(actor.key)

    async def locale_for(self, actor: Actor) -> str:
        """/settings language, else the platform's locale, else the configured default."""
        saved = (await self.store.get_user(actor.key)).settings.locale
        return saved or normalize_locale(actor.locale) or self.settings.bot.locale

    def model(self, name: str, where: str = "a request") -> ModelSpec:
        """A model by name or wire id (retired ones mean their successor), else InvalidOption."""
        return self.choices.model(name, where)

    # ----- jobs ------------------------------------------------------------------------------

    async def imagine(self, request: ImageRequest,
                      progress: ProgressCallback | None = None) -> Reply:
        """A new image from a prompt and optional reference images."""
        return await self._guarded(request.actor, self._job(request, None, progress))

    async def edit(self, request: ImageRequest, reply_to: MessageRef | None = None,
                   progress: ProgressCallback | None = None) -> Reply:
        """Edit a bound result (continuing its conversation) or the supplied images."""
        async def run() -> Reply:
            parent: Turn | None = None
            if request.parent_turn_id:
                # A turn id the client names is continued only by its owner (or an admin), on
                # every platform; replying to a result shown in a shared chat is a binding below.
                parent = await self._owned_turn(request.actor, request.parent_turn_id)
            elif reply_to is not None:
                parent = await self.conversations.turn_for(reply_to)
            if parent is None and not (request.references or request.links):
                raise NoReference()
            # An edit keeps the model and size of what it edits unless the request says otherwise.
            return await self._job(replace(request, kind="edit"), parent, progress,
                                   model=parent.model if parent else None,
                                   size=parent.size if parent else None)

        return await self._guarded(request.actor, run())

    async def act(self, actor: Actor, chat: ChatRef, action: Action,
                  progress: ProgressCallback | None = None) -> Reply:
        """A button press: reroll, a larger size, or variations of a turn."""
        async def run() -> Reply:
            if action.kind not in ("reroll", "upscale", "variations"):
                # Edit needs an instruction (edit()), delete has its own call (delete()).
                raise InvalidOption("action", action.kind, ["reroll", "upscale", "variations"])
            turn = await self._owned_turn(actor, action.turn_id)
            inputs = await self.conversations.inputs(turn)
            if inputs is None:
                raise NotFound()  # a reroll without its references would be a different image
            chosen = (await self.conversations.outputs(turn)
                      if action.kind in ("variations", "upscale") else None)
            # The recipe (style, exclusions) is kept; an upscale's size is asked for now.
            req = pressed(actor, chat, turn, action, inputs, chosen)
            parent = None if req.kind in ("variation", "upscale") else (
                await self.conversations.get(turn.parent_id) if turn.parent_id else None)
            return await self._job(req, parent, progress, model=turn.model, size=turn.size,
                                   aspect=turn.aspect)

        return await self._guarded(actor, run())

    async def wait_idle(self, grace: float) -> None:
        """Wait (up to ``grace`` s) until no request is between reserve and settle/refund."""
        if self._busy:
            await asyncio.wait(list(self._busy), timeout=grace)

    async def _guarded(self, actor: Actor, work: Awaitable[T]) -> T:
        """Run ``work``; a failure that is not a BotError becomes InternalError (logged with its id)."""
        task = asyncio.current_task()
        if task is not None:
            self._busy.add(task)
            task.add_done_callback(self._busy.discard)
        try:
            return await work
        except BotError:
            raise
        except Exception as exc:
            internal = InternalError()
            log.exception("internal error %s for %s", internal.error_id, actor.key)
            raise internal from exc
        finally:
            if task is not None:
                self._busy.discard(task)

    async def _job(self, request: ImageRequest, parent: Turn | None,
                   progress: ProgressCallback | None, *, model: str | None = None,
                   size: str | None = None, aspect: str | None = None) -> Reply:
        actor, chat = request.actor, request.chat
        event = JobEvent(job_id=secrets.token_hex(4), platform=actor.platform, chat=chat.chat_id,
                         user=actor.user_id, model=model or "", size=size or "", kind=request.kind)
        try:
            return await self._job_steps(request, parent, progress, event, model, size, aspect)
        except BaseException as exc:
            event.outcome = (exc.key.removeprefix("error.") if isinstance(exc, BotError)
                             else "cancelled" if isinstance(exc, asyncio.CancelledError)
                             else "internal")
            self.metrics.job(event)
            raise

    async def _job_steps(self, request: ImageRequest, parent: Turn | None,
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

        async def store(result: ProviderResult) -> Turn:
            return await self.conversations.record(
                actor=actor, chat=chat, prompt=prompt, model=spec.name, size=size, aspect=aspect,
                parent_id=parent.id if parent else None, inputs=[*refs, *await linked.stored()],
                outputs=result.images,
                provider_state=result.provider_state, kind=request.kind,
                credits=booking.price.credits, style=opts.style, negative=opts.negative)

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
            await asyncio.shield(self.undeliverable(turn.id))
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
                return (await self.routing.generate(legs, request, moving))[1]
            finally:
                event.durations["upstream"] = time.monotonic() - started

        async def work() -> T:
            # No local names the answer: keep() alone holds its bytes, so it can let them go.
            return await keep(await answer())

        return await self.scheduler.run(actor.key, work, timeout=timeout, on_progress=progress,
                                        job_id=event.job_id)

    def actions_for(self, turn: Turn) -> tuple[Action, ...]:
        """The buttons under a result (see :meth:`Choices.actions_for`)."""
        return self.choices.actions_for(turn)

    # ----- delivery --------------------------------------------------------------------------

    def delivery(self, reply: Reply, caps: Capabilities) -> AbstractAsyncContextManager[Delivery]:
        """Deliver a result: images fitted to ``caps``; ``sent()`` settles, anything else refunds."""
        return self.deliveries.open(reply, caps)

    async def bind(self, turn_id: str, messages: Sequence[MessageRef],
                   timings: Mapping[str, float] | None = None) -> None:
        """Record the messages showing a turn and settle it (what ``Delivery.sent`` does)."""
        await self.deliveries.bind(turn_id, messages, timings)

    async def undeliverable(self, turn_id: str) -> None:
        """The result could not be delivered: refund it and drop the turn."""
        await self.deliveries.undeliverable(turn_id)

    async def turn_for(self, message: MessageRef) -> Turn | None:
        """The turn a platform message shows, if any."""
        return await self.conversations.turn_for(message)

    async def result_images(self, turn_id: str) -> tuple[ImageData, ...]:
        """A turn's output images (for an adapter re-sending or editing them)."""
        turn = await self.conversations.get(turn_id)
        images = await self.conversations.outputs(turn) if turn else None
        if images is None:
            raise NotFound()
        return images

    async def _owned_turn(self, actor: Actor, turn_id: str) -> Turn:
        turn = await self.conversations.get(turn_id)
        if turn is None:
            raise NotFound()
        if turn.actor_key != actor.key and not self.is_admin(actor):
            raise NotOwner()
        return turn

    async def owned(self, actor: Actor, turn_id: str) -> Turn:
        """The turn, when ``actor`` may continue or press it; NotFound / NotOwner otherwise."""
        return await self._owned_turn(actor, turn_id)

    async def delete(self, actor: Actor, turn_id: str) -> list[MessageRef]:
        """Delete a turn (requester or admin); returns the messages the adapter should remove."""
        await self._owned_turn(actor, turn_id)
        messages = await self.conversations.bindings(turn_id)
        await self.conversations.delete(turn_id)
        return messages

    # ----- account ---------------------------------------------------------------------------

    async def usage(self, actor: Actor, chat: ChatRef | None = None) -> Usage:
        """What the actor may still spend."""
        running = sum(self.scheduler.snapshot().by_owner.get(actor.key, (0, 0)))
        return await self.quotas.usage(actor, chat, running=running)

    async def quota_text(self, actor: Actor, chat: ChatRef | None = None) -> str:
        """The /quota answer in the actor's language."""
        locale = await self.locale_for(actor)
        spec = self.model((await self.store.get_user(actor.key)).settings.model
                          or self.settings.bot.default_model)
        costs = ", ".join(f"{s} {spec.credit_cost(s, self.settings.quota.credit_usd)}"
                          for s in spec.sizes)
        return self.presenter.usage(locale, await self.usage(actor, chat), f"{spec.name}: {costs}")

    async def forget(self, actor: Actor) -> int:
        """Delete the actor's turns and images; cancel their queued jobs."""
        self.scheduler.cancel_owner(actor.key)
        return await self.conversations.forget(actor.key)
