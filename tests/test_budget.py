"""The delivery budget: results held for upload stay within it, and waiting keeps job semantics."""

from __future__ import annotations

import asyncio
import io
import os
import random
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from aiohttp import web
from PIL import Image

from bot.bootstrap import Core, build_core
from bot.budget import (
    ANSWER_WEIGHT,
    EXPECTED_ANSWER,
    DeliveryBudget,
    Lease,
    answer_hook,
    expecting,
    reading,
)
from bot.config import Settings
from bot.domain import Actor, ChatRef, ImageData, ImageRequest, MessageRef, Reply
from bot.providers.base import ProviderRequest, ProviderResult
from tests.outcomes import jobs

Factory = Callable[..., Settings]
CHAT = ChatRef("telegram", "1", "private")
MB = 1_000_000


def noise_png(side: int) -> bytes:
    """A PNG of noise (it does not compress: about 3 x side^2 bytes)."""
    image = Image.frombytes("RGB", (side, side), random.Random(side).randbytes(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=0)
    return out.getvalue()


BIG = noise_png(580)  # about 1 MB


class BigResults:
    """An ImageProvider answering each call with a fresh copy of ``BIG`` after ``delays[n]``."""

    name = "demo"

    def __init__(self, delays: Callable[[int], float] = lambda n: 0.0) -> None:
        self.delays = delays
        self.calls = 0

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        n, self.calls = self.calls, self.calls + 1
        await asyncio.sleep(self.delays(n))
        data = BIG + os.urandom(16)  # a new object each time, and a different blob
        return ProviderResult(images=(ImageData(data=data, mime="image/png"),), text="",
                              finish_reason="STOP")

    async def aclose(self) -> None:
        pass


@asynccontextmanager
async def running(settings: Settings, provider: Any) -> AsyncIterator[Core]:
    core = build_core(settings, providers={"demo": provider})
    await core.start()
    try:
        yield core
    finally:
        await core.stop(grace=0)


def limits(budget_mb: float, **more: Any) -> dict[str, Any]:
    return {"delivery_budget_mb": budget_mb, "global_concurrency": 50, **more}


def ask(n: int) -> ImageRequest:
    return ImageRequest(actor=Actor("telegram", str(100 + n), f"user{n}"), chat=CHAT,
                        prompt=f"a lighthouse {n}")


async def kinds(core: Core, actor: Actor) -> list[str]:
    return [row.kind for row in await core.store.ledger(actor.key)]


class Uploads:
    """The adapter's side: hold each result's bytes for ``seconds`` (the upload), then bind."""

    def __init__(self, core: Core, seconds: float) -> None:
        self.core = core
        self.seconds = seconds
        self.held = 0
        self.peak = 0

    async def job(self, n: int) -> Reply:
        """One job; the reply comes back without its images (they were "uploaded")."""
        reply = await jobs(self.core).imagine(ask(n))
        if not reply.images or reply.turn_id is None:
            return reply
        size = sum(image.size_bytes for image in reply.images)
        self.held += size
        self.peak = max(self.peak, self.held)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.held -= size
        await self.core.service.bind(reply.turn_id, [MessageRef("telegram", "1", str(n))])
        return replace(reply, images=reply.images[:0])


# ----- the budget itself -----------------------------------------------------------------------

async def test_waiters_are_served_in_order_within_capacity() -> None:
    budget = DeliveryBudget(10)
    first = budget.try_acquire(6)
    assert first is not None and budget.held == 6
    order: list[int] = []

    async def take(n: int, size: int) -> None:
        lease = await budget.acquire(size)
        order.append(n)
        assert budget.held <= budget.capacity
        await asyncio.sleep(0.01)
        lease.release()

    tasks = [asyncio.create_task(take(n, size)) for n, size in enumerate((5, 2, 4, 1))]
    await asyncio.sleep(0.01)
    assert order == [] and budget.waiting == 4
    assert budget.try_acquire(1) is None  # nobody jumps the line, even when it would fit
    first.release()
    first.release()  # a second release gives nothing back twice
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3] and budget.held == 0 and budget.waiting == 0


async def test_a_cancelled_wait_gives_back_its_place_and_any_grant() -> None:
    budget = DeliveryBudget(10)
    blocker = budget.try_acquire(10)
    assert blocker is not None
    waiting = asyncio.create_task(budget.acquire(8))
    behind = asyncio.create_task(budget.acquire(2))
    await asyncio.sleep(0.01)
    waiting.cancel()  # cancelled while waiting: the one behind it moves up
    await asyncio.sleep(0.01)
    assert budget.waiting == 1
    blocker.release()
    (await behind).release()
    # Granted and cancelled in the same loop turn: the grant is handed back, not lost.
    blocker = budget.try_acquire(10)
    assert blocker is not None
    racing = asyncio.create_task(budget.acquire(5))
    await asyncio.sleep(0.01)
    blocker.release()
    racing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await racing
    assert budget.held == 0 and budget.waiting == 0


async def test_a_result_larger_than_the_budget_goes_alone() -> None:
    budget = DeliveryBudget(10)
    small = budget.try_acquire(3)
    assert small is not None
    huge = asyncio.create_task(budget.acquire(50))
    await asyncio.sleep(0.01)
    assert not huge.done()
    small.release()
    lease = await asyncio.wait_for(huge, 1)
    assert lease.size == 50 and lease.charge == 10 and budget.held == 10
    lease.release()


async def test_a_lost_lease_is_reclaimed() -> None:
    budget = DeliveryBudget(10, max_hold=0.05)
    lease = budget.try_acquire(10)
    assert lease is not None
    assert (await asyncio.wait_for(budget.acquire(10), 2)).charge == 10
    assert not lease.held


class Claim:
    """A lease holder, as a job's pending delivery is one."""

    def __init__(self) -> None:
        self.lease: Lease | None = None


@asynccontextmanager
async def answers(body: bytes) -> AsyncIterator[str]:
    """A loopback server answering every GET with ``body`` (Content-Length set)."""
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def test_answers_wait_for_the_budget_before_their_body_is_read() -> None:
    body = b"x" * MB
    budget = DeliveryBudget(int(1.5 * MB * ANSWER_WEIGHT))  # one answer in memory at a time
    in_hand = peak = 0

    async def call(client: httpx.AsyncClient, url: str) -> int:
        nonlocal in_hand, peak
        claim = Claim()
        with reading(budget, claim):
            response = await client.get(url)
        in_hand += 1
        peak = max(peak, in_hand)
        assert claim.lease is not None and claim.lease.size == len(response.content)
        assert claim.lease.charge == len(response.content) * ANSWER_WEIGHT
        await asyncio.sleep(0.05)  # parsing, storing, uploading...
        in_hand -= 1
        claim.lease.release()
        return response.status_code

    async with answers(body) as url, httpx.AsyncClient(
            event_hooks={"response": [answer_hook]}) as client:
        statuses = await asyncio.gather(*(call(client, url) for _ in range(6)))
        assert statuses == [200] * 6 and peak == 1 and budget.held == 0
        # Outside a job the hook leases nothing.
        assert (await client.get(url)).status_code == 200 and budget.held == 0


async def test_an_answer_without_a_declared_length_is_leased_on_a_guess_then_counted(
        ) -> None:
    body = b"y" * (3 * MB)
    budget = DeliveryBudget(100 * MB)
    app = web.Application()

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()  # no Content-Length, as a relay streaming its answer
        await resp.prepare(request)
        for at in range(0, len(body), 256 * 1024):
            await resp.write(body[at:at + 256 * 1024])
        return resp

    app.router.add_get("/", chunked)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        async with httpx.AsyncClient(event_hooks={"response": [answer_hook]}) as client:
            claim, seen = Claim(), []

            async def watch(response: httpx.Response) -> None:
                assert claim.lease is not None
                seen.append(claim.lease.charge)  # what was leased before any byte was read

            client.event_hooks["response"].append(watch)
            with reading(budget, claim), expecting("1K"):
                response = await client.get(url)
            assert response.content == body
            assert seen == [EXPECTED_ANSWER["1K"] * ANSWER_WEIGHT]
            assert claim.lease is not None and claim.lease.size == len(body)  # grew with it
            assert budget.held == claim.lease.charge == len(body) * ANSWER_WEIGHT
            claim.lease.release()
            assert budget.held == 0
    finally:
        await runner.cleanup()


async def test_covering_more_never_waits_and_counts_until_released() -> None:
    budget = DeliveryBudget(10 * MB)
    first = await budget.acquire(4 * MB)
    first.cover(9 * MB, 1)  # the bytes are in memory already: counted now, no wait
    assert budget.held == 9 * MB
    waiting = asyncio.create_task(budget.acquire(2 * MB))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    first.cover(3 * MB, 1)  # never shrinks it
    assert first.size == 9 * MB
    first.release()
    second = await asyncio.wait_for(waiting, 1)
    assert budget.held == 2 * MB
    second.release()


# ----- jobs ------------------------------------------------------------------------------------

async def test_concurrent_jobs_never_hold_more_than_the_budget(settings_factory: Factory) -> None:
    settings = settings_factory(limits=limits(3.5))  # room for three 1 MB results
    async with running(settings, BigResults()) as core:
        uploads = Uploads(core, seconds=0.1)
        replies = await asyncio.gather(*(uploads.job(n) for n in range(10)))
        assert all(r.ok and r.turn_id for r in replies), [r.text for r in replies]
        assert uploads.peak <= 3.5 * MB
        assert uploads.peak >= 2 * len(BIG)  # they still overlap: the budget is not one-by-one
        assert core.service.deliveries.budget.held == 0 and not core.service.deliveries.local
        for n in range(10):
            assert await kinds(core, ask(n).actor) == ["reserve", "settle"]


async def test_jobs_waiting_for_the_budget_do_not_hold_their_bytes(
        settings_factory: Factory) -> None:
    # One result at a time may be out; twelve arrive faster than they are "uploaded".
    settings = settings_factory(limits=limits(1.5))
    async with running(settings, BigResults(lambda n: 0.05 * n)) as core:
        uploads = Uploads(core, seconds=0.15)
        tracemalloc.start()
        try:
            replies = await asyncio.gather(*(uploads.job(n) for n in range(12)))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert all(r.ok for r in replies)
        # Held while waiting, the results would pile up to ~8 MB; stored and read back, a few.
        assert peak < 5 * len(BIG), f"{peak / MB:.1f} MB"


async def test_a_job_waiting_for_the_budget_times_out_and_is_refunded(
        settings_factory: Factory) -> None:
    settings = settings_factory(limits=limits(1.5, timeout_seconds=0.5))
    async with running(settings, BigResults()) as core:
        first = await jobs(core).imagine(ask(0))  # not delivered yet: it holds the budget
        assert first.ok and first.turn_id
        second = await jobs(core).imagine(ask(1))
        assert second.error == "error.timeout"
        assert await kinds(core, ask(1).actor) == ["reserve", "refund"]
        assert len(core.service.deliveries.local) == 1  # only the first; the second's turn is gone
        await core.service.bind(first.turn_id, [MessageRef("telegram", "1", "1")])
        assert core.service.deliveries.budget.held == 0
        third = await jobs(core).imagine(ask(2))
        assert third.ok, third.text


@pytest.mark.parametrize("how", ["forget", "drain", "caller"])
async def test_a_job_waiting_for_the_budget_can_be_cancelled_and_is_refunded(
        settings_factory: Factory, how: str) -> None:
    settings = settings_factory(limits=limits(1.5))
    async with running(settings, BigResults()) as core:
        first = await jobs(core).imagine(ask(0))
        assert first.ok and first.turn_id
        budget = core.service.deliveries.budget
        task = asyncio.create_task(jobs(core).imagine(ask(1)))
        async with asyncio.timeout(5):
            while budget.waiting == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        if how == "forget":
            await core.service.forget(ask(1).actor)
        elif how == "drain":
            await core.scheduler.drain(0)
        else:
            task.cancel()
        if how == "caller":
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            assert (await task).error == "error.cancelled"
        assert await kinds(core, ask(1).actor) == ["reserve", "refund"]
        assert budget.waiting == 0 and budget.held == len(first.images[0].data)
        await core.service.undeliverable(first.turn_id)
        assert budget.held == 0 and not core.service.deliveries.local
