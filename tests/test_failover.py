"""Failover across routes (issue 17): real providers against the loopback fake upstream.

Route A is native Gemini ("google"), route B OpenRouter ("openrouter"), both on the fake. A fails
with 402, then 503s: jobs move to B within one retry, A's circuit opens, half-opens after its
cool-down and closes on success; a refusal on A is not retried on B; the books charge B's price.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bot.bootstrap import Core, build_core
from bot.config import Settings
from bot.domain import Actor, ChatRef, ImageRequest, MessageRef, Reply
from bot.failover import Circuit
from tests.fake_hostile import connects_fixture  # noqa: F401
from tests.fake_upstream import (  # noqa: F401
    FakeUpstream,
    b64,
    fake_upstream_fixture,
    gemini_body,
    png,
)
from tests.fake_upstream import Reply as Answer
from tests.outcomes import jobs

Factory = Callable[..., Settings]
ALICE = Actor("telegram", "1", "alice")
CHAT = ChatRef("telegram", "1", "private")
MODEL = "nano-banana-2.1"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def two_routes(settings_factory: Factory, upstream: FakeUpstream, **failover: Any) -> Settings:
    return settings_factory(
        providers={"google": {"api": "gemini", "base_url": upstream.url},
                   "openrouter": {"api": "openrouter", "base_url": upstream.v1}},
        models={MODEL: {"routes": ["google", "openrouter"],
                        "route_prices": {"openrouter": {"1K": 0.05, "2K": 0.07, "4K": 0.15}}}},
        failover={"failure_threshold": 2, "cooldown_seconds": 60, "credit_cooldown_seconds": 300,
                  **failover})


@asynccontextmanager
async def running(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Core]:
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-key")
    monkeypatch.setenv("OPENROUTER_API_KEY", "test-openrouter-key")
    core = build_core(settings)
    await core.start()
    try:
        yield core
    finally:
        await core.stop(grace=0)


async def job(core: Core, prompt: str, n: int) -> Reply:
    """One /imagine, delivered (so its credits settle)."""
    reply = await jobs(core).imagine(ImageRequest(actor=ALICE, chat=CHAT, prompt=prompt))
    if reply.ok and reply.turn_id:
        await core.service.bind(reply.turn_id, [MessageRef("telegram", "1", str(n))])
    return reply


def busy(n: int) -> list[Answer]:
    return [Answer(status=503, json={"error": {"code": 503, "message": "overloaded",
                                               "status": "UNAVAILABLE"}},
                   headers={"Retry-After": "0"}) for _ in range(n)]


def circuit(core: Core, name: str) -> Circuit:
    return core.service.routing.circuits[name]


async def test_route_a_fails_jobs_move_to_b_and_the_circuit_cycles(
        settings_factory: Factory, fake_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch,
        connects: list[Any]) -> None:
    clock = Clock()
    async with running(two_routes(settings_factory, fake_upstream), monkeypatch) as core:
        core.service.routing.clock = clock

        def gemini() -> int:
            return len(fake_upstream.seen("gemini"))

        def chat() -> int:
            return len(fake_upstream.seen("chat"))

        # 1. A is out of credit (402): B serves at once, and the books charge B's price.
        fake_upstream.push("gemini", Answer(status=402, json={"error": {
            "code": 402, "message": "insufficient balance"}}))
        reply = await job(core, "a fox", 1)
        assert reply.ok, reply.text
        assert (gemini(), chat()) == (1, 1)
        assert reply.credits_used == 5  # B: $0.05 at $0.01 a credit (A would be 4)
        ledger = await core.store.ledger(ALICE.key)
        assert [e.kind for e in ledger] == ["reserve", "refund", "reserve", "settle"]
        assert [e.credits for e in ledger if e.kind == "reserve"] == [4, 5]
        assert [e.usd for e in ledger if e.kind == "reserve"] == [0.0336, 0.05]
        assert circuit(core, "google").state == "open"
        # 2. While A is open, jobs go straight to B: A is not asked.
        assert (await job(core, "a hare", 2)).ok
        assert (gemini(), chat()) == (1, 2)
        # 3. After the cool-down, A is half-open: one trial. It answers 503s: one retry, then B.
        clock.now += 301
        assert circuit(core, "google").state == "half-open"
        fake_upstream.push("gemini", *busy(5))
        reply = await job(core, "an owl", 3)
        assert reply.ok and reply.credits_used == 5
        assert (gemini(), chat()) == (3, 3)  # the first try and one retry on A
        assert circuit(core, "google").state == "open"  # a failed trial opens it again
        # 4. After the (5xx) cool-down, the trial succeeds and closes the circuit; A's price.
        clock.now += 61
        fake_upstream._queues["gemini"].clear()
        reply = await job(core, "a lynx", 4)
        assert reply.ok and reply.credits_used == 4
        assert (gemini(), chat()) == (4, 3)
        assert circuit(core, "google").state == "closed"
        # The failovers are counted in /metrics and kept for the operator view.
        metrics = core.metrics.render().decode()
        assert ('imagine_failovers_total{model="nano-banana-2.1",reason="out of credit",'
                'source="google",target="openrouter"} 1.0') in metrics
        assert 'reason="UpstreamBusy",source="google",target="openrouter"} 1.0' in metrics
        assert 'imagine_route_state{route="google"} 0.0' in metrics
        view = core.service.routing.view()
        assert [f["reason"] for f in view["failovers"]] == ["UpstreamBusy", "out of credit"]
    assert connects and all(ipaddress.ip_address(host).is_loopback for host in connects)


async def test_a_refusal_on_a_is_not_retried_on_b(
        settings_factory: Factory, fake_upstream: FakeUpstream,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(two_routes(settings_factory, fake_upstream), monkeypatch) as core:
        fake_upstream.push("gemini", Answer(json=gemini_body(None, block="PROHIBITED_CONTENT")))
        reply = await job(core, "something forbidden", 1)
        assert reply.error is not None and reply.error.startswith("error.refused"), reply.error
        assert len(fake_upstream.seen("gemini")) == 1
        assert fake_upstream.seen("chat") == []  # B was never asked
        assert [e.kind for e in await core.store.ledger(ALICE.key)] == ["reserve", "refund"]
        assert circuit(core, "google").state == "closed"  # a refusal is an answer, not an outage


async def test_repeated_5xx_open_the_circuit_after_the_threshold(
        settings_factory: Factory, fake_upstream: FakeUpstream,
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = two_routes(settings_factory, fake_upstream, retries_before_failover=0)
    async with running(settings, monkeypatch) as core:
        fake_upstream.push("gemini", *busy(2))
        assert (await job(core, "one", 1)).ok
        assert circuit(core, "google").state == "closed"  # one failure is not a pattern
        assert (await job(core, "two", 2)).ok
        assert circuit(core, "google").state == "open"
        assert (len(fake_upstream.seen("gemini")), len(fake_upstream.seen("chat"))) == (2, 2)


async def test_the_last_route_keeps_its_retries_and_its_error(
        settings_factory: Factory, fake_upstream: FakeUpstream,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(two_routes(settings_factory, fake_upstream), monkeypatch) as core:
        fake_upstream.push("gemini", Answer(status=402, json={"error": {"code": 402,
                                                                        "message": "no credit"}}))
        fake_upstream.push("chat", *busy(10))
        reply = await job(core, "nobody can", 1)
        assert reply.error == "error.busy", reply.error
        # B, the last route, uses all its own retries (max_retries = 3): 4 tries.
        assert len(fake_upstream.seen("chat")) == 4
        ledger = await core.store.ledger(ALICE.key)
        assert sum(e.credits for e in ledger) == 0  # nothing charged for failed work


def test_routes_must_name_configured_providers(settings_factory: Factory) -> None:
    with pytest.raises(ValueError, match="'nowhere' is not a configured provider"):
        settings_factory(providers={"google": {"api": "gemini"}},
                         models={MODEL: {"routes": ["google", "nowhere"]}})


async def test_a_half_open_route_takes_one_trial_at_a_time(
        settings_factory: Factory, fake_upstream: FakeUpstream,
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    async with running(two_routes(settings_factory, fake_upstream), monkeypatch) as core:
        core.service.routing.clock = clock
        fake_upstream.push("gemini", Answer(status=402, json={"error": {"code": 402,
                                                                        "message": "no credit"}}))
        assert (await job(core, "first", 1)).ok
        clock.now += 301  # half-open: the next job is A's one trial, a slow one
        fake_upstream.push("gemini", Answer(json=gemini_body([{"inlineData": {
            "mimeType": "image/png", "data": b64(png())}}]), delay=1.0))
        bob = Actor("telegram", "2", "bob")
        trial = asyncio.create_task(job(core, "trial", 2))
        for _ in range(500):  # until the trial reached A
            if len(fake_upstream.seen("gemini")) == 2:
                break
            await asyncio.sleep(0.01)
        # While the trial runs, others go to B instead of piling onto a route that may be down.
        other = await jobs(core).imagine(ImageRequest(actor=bob, chat=CHAT, prompt="other"))
        assert other.ok and other.credits_used == 5
        assert len(fake_upstream.seen("gemini")) == 2
        assert (await trial).ok
        assert circuit(core, "google").state == "closed"


async def test_a_second_key_for_the_same_route(settings_factory: Factory,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Two providers of one api with different keys are two routes; a rejected key moves on."""
    upstream = FakeUpstream(key="the-good-key")  # Google answers any other key 400 "not valid"
    await upstream.start()
    try:
        monkeypatch.setenv("KEY_A", "a-revoked-key")
        monkeypatch.setenv("KEY_B", "the-good-key")
        settings = settings_factory(
            providers={"key-a": {"api": "gemini", "base_url": upstream.url, "api_key_env": "KEY_A"},
                       "key-b": {"api": "gemini", "base_url": upstream.url, "api_key_env": "KEY_B"}},
            models={MODEL: {"routes": ["key-a", "key-b"]}})
        core = build_core(settings)
        await core.start()
        try:
            reply = await job(core, "a heron", 1)
            assert reply.ok and reply.credits_used == 4  # same route, same price: no rebooking
            assert [e.kind for e in await core.store.ledger(ALICE.key)] == ["reserve", "settle"]
            assert circuit(core, "key-a").state == "open"  # a rejected key opens it at once
            assert (await job(core, "a crane", 2)).ok
            assert upstream.refused == [("gemini", "key")]  # key A was tried once, not again
        finally:
            await core.stop(grace=0)
    finally:
        await upstream.stop()
