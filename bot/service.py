"""The core's jobs as users ask for them: imagine, edit, act (buttons), delete, deliver, usage.

Each call decides what it asks for (a new image, the turn an edit continues, the recipe a
button repeats) and hands it to :class:`~bot.pipeline.JobPipeline`, the one path every job
follows. The reservation stays held, linked to the turn in the store, until the result's
delivery (:meth:`ImagineService.delivery`) settles or refunds it; any failure before that
refunds it at once. Crashes leave it held, and start-up refunds it. Every user-facing call
raises :class:`~bot.errors.BotError` (one contract; see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import TypeVar

from bot.batch import Batches
from bot.budget import DeliveryBudget
from bot.catalog import Lineup, ModelSpec
from bot.choices import Choices
from bot.config import Settings
from bot.conversations import Conversations
from bot.delivery import Deliveries, Delivery
from bot.domain import (
    Action,
    Actor,
    Capabilities,
    ChatRef,
    Handoff,
    ImageData,
    ImageRequest,
    MessageRef,
    Reply,
    Turn,
    Usage,
)
from bot.errors import BotError, InternalError, InvalidOption, NoReference, NotFound, NotOwner
from bot.failover import Routing
from bot.groups import Groups
from bot.handoff import Call, Handoffs, Ticket
from bot.jobs import Scheduler
from bot.messages import normalize_locale
from bot.metrics import Metrics
from bot.pipeline import JobPipeline, PrepareReference, ProgressCallback
from bot.present import Presenter
from bot.providers.base import ImageProvider
from bot.quotas import Quotas
from bot.recipes import pressed
from bot.results import Results
from bot.storage.base import Store
from bot.styles import Styles

log = logging.getLogger(__name__)
T = TypeVar("T")


class ImagineService:
    """The core's one entry point for adapters."""

    def __init__(self, *, settings: Settings, store: Store, quotas: Quotas,
                 conversations: Conversations, providers: dict[str, ImageProvider],
                 scheduler: Scheduler, presenter: Presenter,
                 prepare_reference: PrepareReference, metrics: Metrics,
                 lineup: Lineup | None = None, budget: DeliveryBudget | None = None,
                 handoffs: Handoffs | None = None) -> None:
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
        # Without one, no job is handed off (a single process, or tests that do not ask).
        self.handoffs = handoffs or Handoffs(store, quotas, conversations.blobs,
                                             owner=quotas.owner or "", enabled=False)
        self.batches = Batches(quotas=quotas, deliveries=self.deliveries,
                               conversations=conversations, routing=self.routing,
                               scheduler=scheduler, handoffs=self.handoffs)
        self.results = Results(settings, quotas, presenter, self.choices)
        self.pipeline = JobPipeline(
            settings=settings, store=store, quotas=quotas, conversations=conversations,
            providers=providers, scheduler=scheduler, presenter=presenter,
            prepare_reference=prepare_reference, metrics=metrics, choices=self.choices,
            routing=self.routing, groups=self.groups, styles=self.styles,
            deliveries=self.deliveries, batches=self.batches, results=self.results,
            handoffs=self.handoffs)
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

    async def imagine(self, request: ImageRequest, progress: ProgressCallback | None = None,
                      handoff: Handoff | None = None) -> Reply:
        """A new image from a prompt and optional reference images."""
        with self.handoffs.calling(Call("imagine", request.actor, request.chat, request), handoff):
            return await self._guarded(request.actor, self.pipeline.run(request, None, progress))

    async def edit(self, request: ImageRequest, reply_to: MessageRef | None = None,
                   progress: ProgressCallback | None = None,
                   handoff: Handoff | None = None) -> Reply:
        """Edit a bound result (continuing its conversation) or the supplied images."""
        call = Call("edit", request.actor, request.chat, request, reply_to)
        with self.handoffs.calling(call, handoff):
            return await self._edit(request, reply_to, progress)

    async def _edit(self, request: ImageRequest, reply_to: MessageRef | None,
                    progress: ProgressCallback | None) -> Reply:
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
            return await self.pipeline.run(replace(request, kind="edit"), parent, progress,
                                           model=parent.model if parent else None,
                                           size=parent.size if parent else None)

        return await self._guarded(request.actor, run())

    async def act(self, actor: Actor, chat: ChatRef, action: Action,
                  progress: ProgressCallback | None = None,
                  handoff: Handoff | None = None) -> Reply:
        """A button press: reroll, a larger size, or variations of a turn."""
        with self.handoffs.calling(Call("act", actor, chat, action=action), handoff):
            return await self._act(actor, chat, action, progress)

    async def resume(self, ticket: Ticket, progress: ProgressCallback | None = None) -> Reply:
        """Make a call another process had queued when it stopped (bot/handoff.py), again."""
        try:
            call = await self.handoffs.call_of(ticket)
            handoff = Handoff(ticket.platform, lambda: ticket.target)
            with self.handoffs.calling(call, handoff, ticket=ticket):
                if call.verb == "act" and call.action is not None:
                    return await self._act(call.actor, call.chat, call.action, progress)
                if call.request is None:
                    raise NotFound()
                if call.verb == "edit":
                    return await self._edit(call.request, call.reply_to, progress)
                return await self._guarded(call.actor,
                                           self.pipeline.run(call.request, None, progress))
        finally:  # refused or failed before its job queued: nobody else should make it again
            await asyncio.shield(self.handoffs.release(ticket))

    async def _act(self, actor: Actor, chat: ChatRef, action: Action,
                   progress: ProgressCallback | None) -> Reply:
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
            return await self.pipeline.run(req, parent, progress, model=turn.model,
                                           size=turn.size, aspect=turn.aspect)

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

    def actions_for(self, turn: Turn) -> tuple[Action, ...]:
        """The buttons under a result (see :meth:`Choices.actions_for`)."""
        return self.choices.actions_for(turn)

    # ----- delivery --------------------------------------------------------------------------

    def delivery(self, reply: Reply, caps: Capabilities,
                 parked: bool = False) -> AbstractAsyncContextManager[Delivery]:
        """Deliver a result: images fitted to ``caps``; ``sent()`` settles, anything else refunds."""
        return self.deliveries.open(reply, caps, parked)

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
