"""Failover across routes: each model's routes in order, a circuit per route, and the rebooking.

A model may name several providers (``[models.NAME] routes = ["google", "openrouter"]``; two
providers of one API with different keys are two routes). Each provider has a circuit: out of
credit or a rejected key opens it at once for ``credit_cooldown_seconds``; ``failure_threshold``
5xx / timeouts / busy answers in a row open it for ``cooldown_seconds``; then one trial job
(half-open) closes it on success or opens it again. A refusal, or an answer without an image,
never moves the job: the next route would be asked to do what the first declined. When a job
moves, its credits are rebooked at the price of the route that serves it (:class:`Booking`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from prometheus_client import Counter, Gauge

from bot.catalog import BUILTIN, ModelSpec
from bot.config import Settings
from bot.delivery import Pending
from bot.domain import Actor, ChatRef
from bot.errors import (
    BotError,
    JobTimeout,
    ModelUnavailable,
    UpstreamBusy,
    UpstreamConfig,
    UpstreamError,
    UpstreamNoCredit,
)
from bot.metrics import JobEvent, Metrics
from bot.providers.base import ImageProvider, ProviderRequest, ProviderResult
from bot.providers.retry import RETRY_CAP
from bot.providers.routes import ROUTES
from bot.quotas import Price, Quotas

log = logging.getLogger(__name__)
State = Literal["closed", "open", "half-open"]
Clock = Callable[[], float]
_STATE_VALUE = {"closed": 0, "half-open": 1, "open": 2}


@dataclass(frozen=True, slots=True)
class Leg:
    """One route a model may be served by: the provider's name and the model as spelt there."""

    provider: str
    spec: ModelSpec


@dataclass(frozen=True, slots=True)
class FailoverRecord:
    """One job that moved from a route to the next, and why."""

    at: float
    model: str
    source: str
    target: str
    reason: str


class Circuit:
    """One route's health from its recent outcomes: closed, open, or half-open (one trial)."""

    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self._clock = clock
        self._state: State = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.cooldown = 0.0
        self.probing = False
        self.last_error = ""

    @property
    def state(self) -> State:
        """The state now (an open circuit whose cool-down is over is half-open)."""
        if self._state == "open" and self._clock() >= self.opened_at + self.cooldown:
            self._state = "half-open"
        return self._state

    def usable(self) -> bool:
        """True when a job may be sent here now (half-open: only while no trial runs)."""
        state = self.state
        return state == "closed" or (state == "half-open" and not self.probing)

    def success(self) -> None:
        """The route answered: close the circuit."""
        if self._state != "closed":
            log.info("route %s: circuit closed (it answered)", self.name)
        self._state, self.failures, self.probing = "closed", 0, False

    def failure(self, reason: str, *, cooldown: float, threshold: int, at_once: bool) -> None:
        """A failure: open now (``at_once``, or a failed trial) or after ``threshold`` in a row."""
        self.failures += 1
        self.last_error = reason
        trial = self._state == "half-open"
        self.probing = False
        if at_once or trial or self.failures >= threshold:
            self._state, self.opened_at, self.cooldown = "open", self._clock(), cooldown
            log.warning("route %s: circuit open for %.0f s (%s)", self.name, cooldown, reason)

    def view(self) -> dict[str, object]:
        """What the operator view shows for this route."""
        left = max(0.0, self.opened_at + self.cooldown - self._clock()) if self.state == "open" else 0
        return {"route": self.name, "state": self.state, "failures": self.failures,
                "last_error": self.last_error, "reopens_in": round(left, 1)}


def _reason(exc: BotError) -> tuple[str, bool] | None:
    """Why ``exc`` moves a job to the next route and whether it opens the circuit at once."""
    if isinstance(exc, ModelUnavailable):
        return "model unavailable", False
    if isinstance(exc, UpstreamNoCredit):
        return "out of credit", True
    if isinstance(exc, UpstreamConfig):
        return "key rejected", True
    if isinstance(exc, UpstreamBusy | UpstreamError | JobTimeout):
        return type(exc).__name__, False
    return None  # Refused, NoImage and the user's own mistakes stay where they are


class Routing:
    """Sends a job to the first usable route of its model, and on to the next when one fails."""

    def __init__(self, settings: Settings, providers: Mapping[str, ImageProvider],
                 metrics: Metrics | None = None, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self.cfg = settings.failover
        self.providers = providers
        self.clock = clock  # read at each use, so a test can move time
        self.circuits = {name: Circuit(name, self._now) for name in providers}
        self.recent: deque[FailoverRecord] = deque(maxlen=self.cfg.history)
        self._counter: Counter | None = None
        if metrics is not None:
            self._counter = Counter("imagine_failovers_total", "Jobs moved to the next route",
                                    ["model", "source", "target", "reason"],
                                    registry=metrics.registry)
            state = Gauge("imagine_route_state", "Circuit per route: 0 closed, 1 half-open, 2 open",
                          ["route"], registry=metrics.registry)
            for name, circuit in self.circuits.items():
                state.labels(name).set_function(
                    lambda c=circuit: _STATE_VALUE[c.state])  # type: ignore[misc]

    def legs(self, spec: ModelSpec) -> tuple[Leg, ...]:
        """Every route of ``spec`` in the configured order, the model spelt for each."""
        over = self.settings.models.get(spec.name)
        names = (over.routes if over and over.routes else None) or (spec.provider,)
        table = self.settings.provider_table()
        base = BUILTIN.get(spec.name)
        google_id = (over.id if over and over.id else None) or (base.id if base else spec.id)
        legs = []
        for name in names:
            if name == spec.provider:
                legs.append(Leg(name, spec))
                continue
            api = table[name].api
            ids = over.ids if over else {}
            prices = over.route_prices.get(name) if over else None
            wire = ids.get(name) or ids.get(api) or ROUTES[api].model_id(google_id)
            legs.append(Leg(name, replace(spec, provider=name, id=wire,
                                          prices=dict(prices or spec.prices))))
        if over and spec.provider in over.route_prices:
            legs = [replace(leg, spec=replace(leg.spec, prices=dict(
                over.route_prices[spec.provider]))) if leg.provider == spec.provider else leg
                for leg in legs]
        return tuple(legs)

    def plan(self, spec: ModelSpec) -> tuple[Leg, ...]:
        """The routes to try, in order: usable ones; every one when none is (a last try)."""
        legs = self.legs(spec)
        usable = tuple(leg for leg in legs if self._circuit(leg).usable())
        return usable or legs

    def _now(self) -> float:
        return self.clock()

    def _circuit(self, leg: Leg) -> Circuit:
        return self.circuits.setdefault(leg.provider, Circuit(leg.provider, self._now))

    async def generate(self, legs: tuple[Leg, ...], request: ProviderRequest,
                       moving: Callable[[Leg], Awaitable[None]]) -> ProviderResult:
        """The first answer along ``legs``; ``moving(leg)`` runs before each route after the first."""
        for index, leg in enumerate(legs):
            if index:
                await moving(leg)
            last = index == len(legs) - 1
            circuit = self._circuit(leg)
            if circuit.state == "half-open":
                circuit.probing = True
            token = RETRY_CAP.set(None if last else self.cfg.retries_before_failover)
            try:
                result = await self.providers[leg.provider].generate(
                    replace(request, model_id=leg.spec.id, send_size=leg.spec.send_size))
            except BotError as exc:
                why = _reason(exc)
                if why is None:
                    circuit.success()  # it answered; the answer was no
                    raise
                reason, at_once = why
                if not isinstance(exc, ModelUnavailable):
                    cooldown = self.cfg.credit_cooldown_seconds if at_once else self.cfg.cooldown_seconds
                    circuit.failure(reason, cooldown=cooldown, threshold=self.cfg.failure_threshold,
                                    at_once=at_once)
                if last:
                    raise
                self._moved(leg, legs[index + 1], reason)
                continue
            finally:
                RETRY_CAP.reset(token)
                circuit.probing = False
            circuit.success()
            return result
        raise AssertionError("no route")  # legs is never empty

    def _moved(self, source: Leg, target: Leg, reason: str) -> None:
        log.warning("failover: %s moves from route %s to %s (%s)", source.spec.name,
                    source.provider, target.provider, reason)
        self.recent.appendleft(FailoverRecord(time.time(), source.spec.name, source.provider,
                                              target.provider, reason))
        if self._counter is not None:
            self._counter.labels(source.spec.name, source.provider, target.provider, reason).inc()

    def view(self) -> dict[str, list[dict[str, object]]]:
        """Route health and the last failovers, for the operator view."""
        return {"routes": [c.view() for c in self.circuits.values()],
                "failovers": [{"at": r.at, "model": r.model, "from": r.source, "to": r.target,
                               "reason": r.reason} for r in self.recent]}


class Booking:
    """A job's held credits, rebooked at the price of the route that serves it."""

    def __init__(self, quotas: Quotas, actor: Actor, chat: ChatRef, size: str, price: Price,
                 pending: Pending) -> None:
        self.quotas, self.actor, self.chat, self.size = quotas, actor, chat, size
        self.price = price
        self.pending = pending

    @classmethod
    async def open(cls, quotas: Quotas, actor: Actor, chat: ChatRef, size: str, price: Price,
                   event: JobEvent) -> Booking:
        """Hold ``price`` for the job ``event`` logs (QuotaExceeded when a window is short)."""
        held = await quotas.reserve(actor, chat, price, model=event.model, size=size)
        event.credits, event.usd = price.credits, price.usd
        return cls(quotas, actor, chat, size, price, Pending(held.id, event))

    async def move(self, leg: Leg) -> None:
        """Give the hold back and hold the next route's price (QuotaExceeded if it is too dear)."""
        price = self.quotas.price(leg.spec, self.size)
        if price == self.price:
            return
        await self.quotas.refund(self.pending.reservation_id, f"failover to {leg.provider}")
        held = await self.quotas.reserve(self.actor, self.chat, price, model=leg.spec.name,
                                         size=self.size)
        self.price, self.pending.reservation_id = price, held.id
        self.pending.event.credits, self.pending.event.usd = price.credits, price.usd
