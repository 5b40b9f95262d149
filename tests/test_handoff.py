"""Queued jobs handed over to another process (bot/handoff.py): the tickets in the store on both
engines, and two cores on one database standing for two processes, one of which stops while a
job waits. The three-process proof with kill -9 is tests/test_scale_processes.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.bootstrap import Core, build_core
from bot.config import Settings
from bot.domain import Actor, Capabilities, Handoff, ImageData, MessageRef
from bot.errors import Banned, HandedOver
from bot.storage.handoff_port import Ticket
from tests.helpers import png_data
from tests.store_engines import AnyStore, fetch
from tests.test_service import ALICE, BOB, FakeProvider, ask, kinds, running
from tests.test_store_concurrency import expire

TARGET = '{"chat_id": 1, "reply_to": 7, "thread_id": null, "status": 12}'
CAPS = Capabilities(caption_limit=4096, photo_budget=None)


def ticket(name: str, platform: str = "telegram", age: timedelta = timedelta(0)) -> Ticket:
    return Ticket(name, platform, TARGET, '{"verb": "imagine"}', datetime.now(UTC) - age)


async def test_a_ticket_goes_to_one_process_once_its_owner_stopped(
        two: tuple[AnyStore, AnyStore]) -> None:
    a, b = two
    for name in ("dead", "b", "c"):
        await a.register_instance(name, 60)
    await a.hand_off(ticket("j1"), "dead")
    await a.hand_off(ticket("j2", "discord"), "dead")
    assert await b.claim_handoffs("telegram", "b") == []  # its owner still runs
    await expire(a, "dead")
    claims = await asyncio.gather(b.claim_handoffs("telegram", "b"),
                                  a.claim_handoffs("telegram", "c"))
    won = [c for c in claims if c]
    assert len(won) == 1 and [(t.id, t.target, t.call) for t in won[0]] == [
        ("j1", TARGET, '{"verb": "imagine"}')]
    winner = "b" if claims[0] else "c"
    assert await a.claim_handoffs("telegram", "d") == []  # claimed by a live process
    # The stalled owner cannot start it any more; the winner takes it back when it starts.
    assert not await a.take_back("j1", "dead")
    assert await b.take_back("j1", winner) and not await b.take_back("j1", winner)
    [other] = await b.claim_handoffs("discord", "b")  # another platform's, claimed apart
    assert other.id == "j2"
    await b.drop_handoff("j2")
    assert await fetch(b, "SELECT id FROM handoffs") == []


async def test_a_ticket_written_again_changes_hands_and_keeps_its_age(
        two: tuple[AnyStore, AnyStore]) -> None:
    a, _ = two
    first = ticket("j1", age=timedelta(minutes=5))
    await a.hand_off(first, "a")
    await a.hand_off(Ticket("j1", "telegram", "{}", '{"verb": "act"}', datetime.now(UTC)), "b")
    assert not await a.take_back("j1", "a")
    await a.register_instance("c", 60)
    [again] = await a.claim_handoffs("telegram", "c")  # "b" never registered: gone
    assert (again.target, again.call) == ("{}", '{"verb": "act"}')
    assert abs((again.created_at - first.created_at).total_seconds()) < 1


# ----- two cores on one database --------------------------------------------------------------


async def held_by(core: Core) -> list[str]:
    return [r[0] for r in await fetch(core.store, "SELECT id FROM handoffs")]  # type: ignore[arg-type]


async def test_a_queued_job_of_a_stopped_process_is_made_by_another(
        settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(limits={"global_concurrency": 1, "per_user_queued": 2})
    gate = asyncio.Event()
    first = FakeProvider()
    first.generate = _gated(first, gate)  # type: ignore[method-assign]
    later = FakeProvider()
    reference = png_data(40, 30, color=(10, 200, 10))
    async with running(settings, providers={"demo": first}) as a, \
            running(settings, providers={"demo": later}) as b:
        a.service.handoffs.enabled = b.service.handoffs.enabled = True
        place = Handoff("telegram", lambda: TARGET)
        busy = asyncio.create_task(a.api.imagine(ask("the one running", actor=BOB), None, place))
        await first.started.wait()
        assert await held_by(a) == []  # started at once: its ticket was taken back
        queued = asyncio.create_task(a.api.imagine(
            replace(ask("a fox"), references=(reference,)), None, place))
        while not await held_by(a):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert await b.api.handed_over("telegram") == []  # its process still runs

        await a.instance.stop()  # A stops renewing: its lease is gone
        [(claimed, actor)] = await b.api.handed_over("telegram")
        assert actor == ALICE and claimed.target == TARGET
        assert await b.api.handed_over("telegram") == []  # once
        reply = await b.api.resume(claimed)
        assert reply.ok and later.requests[0].prompt.endswith("a fox")
        [sent_ref] = later.requests[0].references  # the reference came through the image store
        assert isinstance(sent_ref, ImageData) and sent_ref.width == 40
        async with b.api.delivery(reply, CAPS) as out:
            await out.sent([MessageRef("telegram", "1", "99")])
        assert await held_by(b) == []

        gate.set()  # A's slot frees: its copy of the job finds its ticket gone
        with pytest.raises(HandedOver):  # its user is told another process makes it
            await queued
        await busy
        assert len(first.requests) == 1  # A never made the fox
        # A's hold was refunded by the sweep, B's reservation settled: each closed once.
        assert await kinds(b) == ["reserve", "refund", "reserve", "settle"]


async def test_a_process_that_stops_hands_its_waiting_jobs_over(
        settings_factory: Callable[..., Settings]) -> None:
    """A restart (SIGTERM: drain) is not a crash: the waiting job is told it is handed over, its
    ticket stays, and the next process makes it at once (the lease was given up, not lapsed)."""
    settings = settings_factory(limits={"global_concurrency": 1, "per_user_queued": 2})
    gate = asyncio.Event()
    first = FakeProvider()
    first.generate = _gated(first, gate)  # type: ignore[method-assign]
    a = build_core(settings, providers={"demo": first})
    await a.start()
    a.service.handoffs.enabled = True
    place = Handoff("telegram", lambda: TARGET)
    busy = asyncio.create_task(a.api.imagine(ask("the one running", actor=BOB), None, place))
    await first.started.wait()
    queued = asyncio.create_task(a.api.imagine(ask("a heron"), None, place))
    while not await held_by(a):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    await a.stop(grace=0)  # the running one is cut short (refunded), the waiting one handed over
    with pytest.raises(HandedOver) as told:
        await queued
    assert told.value.key == "error.handed_over"
    await asyncio.gather(busy, return_exceptions=True)
    async with running(settings, providers={"demo": FakeProvider()}) as b:
        b.service.handoffs.enabled = True
        [(claimed, actor)] = await b.api.handed_over("telegram")  # no lease to wait out
        assert actor == ALICE
        reply = await b.api.resume(claimed)
        async with b.api.delivery(reply, CAPS) as out:
            await out.sent([MessageRef("telegram", "1", "98")])
        assert await kinds(b) == ["reserve", "refund", "reserve", "settle"]
        assert await held_by(b) == []


async def test_one_process_hands_nothing_off(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(limits={"global_concurrency": 1, "per_user_queued": 2})
    gate = asyncio.Event()
    provider = FakeProvider()
    provider.generate = _gated(provider, gate)  # type: ignore[method-assign]
    async with running(settings, providers={"demo": provider}) as core:
        assert not core.service.handoffs.enabled  # no [redis]: nobody to hand it to
        place = Handoff("telegram", lambda: TARGET)
        jobs = [asyncio.create_task(core.api.imagine(ask(p, actor=who), None, place))
                for p, who in (("one", BOB), ("two", ALICE))]
        await provider.started.wait()
        await asyncio.sleep(0.05)
        assert core.scheduler.snapshot().queued == 1 and await held_by(core) == []
        gate.set()
        await asyncio.gather(*jobs)


async def test_old_unreadable_and_refused_tickets_are_given_up(
        settings_factory: Callable[..., Settings]) -> None:
    async with running(settings_factory(limits={"delivery_retry_hours": 1})) as core:
        core.service.handoffs.enabled = True
        call = ('{"verb": "imagine", "actor": {"platform": "telegram", "user_id": "1"},'
                ' "chat": {"platform": "telegram", "chat_id": "1"}, "request": {"prompt": "a fox",'
                ' "refs": [], "options": {"negative": []}, "kind": "imagine",'
                ' "parent_turn_id": null, "links": []}}')
        await core.store.hand_off(replace(ticket("old", age=timedelta(hours=2)), call=call), "x")
        await core.store.hand_off(replace(ticket("new", age=timedelta(minutes=1)), call=call), "x")
        await core.store.hand_off(replace(ticket("bad"), call="{not json"), "gone")
        claimed = await core.api.handed_over("telegram")
        assert [(t.id, a) for t, a in claimed] == [("new", Actor("telegram", "1"))]
        def counted(outcome: str) -> float | None:
            return core.metrics.registry.get_sample_value(
                "imagine_handoffs_total", {"platform": "telegram", "outcome": outcome})

        assert (counted("taken_over"), counted("given_up")) == (1, 2)
        assert await held_by(core) == ["new"]  # the old and the unreadable ones are gone
        await core.store.set_user_flags(ALICE.key, banned=True)  # banned meanwhile: refused, not kept
        with pytest.raises(Banned):
            await core.api.resume(claimed[0][0])
        assert await held_by(core) == []


def _gated(provider: FakeProvider, gate: asyncio.Event):  # type: ignore[no-untyped-def]
    """The provider's generate, waiting for ``gate`` before it answers."""
    answer = provider.generate

    async def generate(request):  # type: ignore[no-untyped-def]
        provider.started.set()
        await gate.wait()
        return await answer(request)

    return generate
