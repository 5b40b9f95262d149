"""The outbox through the port: a parked result survives a restart held, then is sent or refunded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.config import Settings
from bot.domain import Capabilities, MessageRef, Reply
from bot.outbox import reply_from_json, reply_to_json
from bot.storage.base import Parked
from tests.test_service import ALICE, ask, kinds, running

Factory = Callable[..., Settings]
CAPS = Capabilities(caption_limit=4096, photo_budget=None)
TARGET = '{"chat_id": 1001, "reply_to": 7, "thread_id": null}'


async def park_and_stop(settings: Settings, n: int = 1) -> Reply:
    """A result the platform refused for now, parked, and the process stopped mid-wait."""
    async with running(settings) as core:
        reply = await core.api.imagine(ask("a lighthouse", n=n))
        waiting = asyncio.Event()

        async def deliver() -> None:
            async with core.api.delivery(reply, CAPS) as out:
                await out.park("telegram", TARGET)
                waiting.set()
                await asyncio.sleep(3600)  # retry_after: an hour

        task = asyncio.create_task(deliver())
        await waiting.wait()
        task.cancel()  # the shutdown
        await asyncio.gather(task, return_exceptions=True)
        assert [r.turn_id for r in await core.store.held_reservations()] == list(
            reply.candidates or (reply.turn_id,))
        await core.instance.beat()  # the sweep leaves it held
        assert len(await core.store.held_reservations()) == max(1, n)
    return reply


async def test_a_parked_result_is_held_across_a_restart_and_sent_after_it(
        settings_factory: Factory) -> None:
    settings = settings_factory()
    reply = await park_and_stop(settings)
    async with running(settings) as core:  # the next start: the sweep ran, the result is held
        assert [r.turn_id for r in await core.store.held_reservations()] == [reply.turn_id]
        assert await core.api.parked("discord") == []
        [parked] = await core.api.parked("telegram")
        assert parked.target == TARGET and await core.api.parked("telegram") == []
        again = await core.api.redeliver(parked)
        assert again is not None and again.turn_id == reply.turn_id
        assert again.text == reply.text and again.actions == reply.actions
        assert [i.data for i in again.images] == [i.data for i in reply.images]
        async with core.api.delivery(again, CAPS) as out:
            await out.sent([MessageRef("telegram", "1001", "9")])
        assert sorted(await kinds(core)) == ["reserve", "settle"]
        assert await core.store.claim_parked("telegram", "someone") == []  # the row went too


async def test_a_parked_result_that_waited_too_long_is_refunded(
        settings_factory: Factory) -> None:
    settings = settings_factory(limits={"delivery_retry_hours": 1.0})
    reply = await park_and_stop(settings, n=2)
    async with running(settings) as core:
        [parked] = await core.api.parked("telegram")
        assert parked.turn_ids == reply.candidates
        old = Parked(parked.delivery, parked.turn_ids, parked.platform, parked.target,
                     parked.reply, datetime.now(UTC) - timedelta(hours=2))
        assert await core.api.redeliver(old) is None
        assert sorted(await kinds(core)) == ["refund", "refund", "reserve", "reserve"]
        assert await core.store.held_reservations() == []
        assert (await core.service.usage(ALICE)).credits_left == 100


async def test_a_parked_delivery_that_ends_is_unparked_either_way(
        settings_factory: Factory) -> None:
    async with running(settings_factory()) as core:
        sent = await core.api.imagine(ask("sent after a wait"))
        async with core.api.delivery(sent, CAPS) as out:
            await out.park("telegram", TARGET)
            await out.sent([MessageRef("telegram", "1001", "10")])
        refused = await core.api.imagine(ask("the bot was blocked meanwhile"))
        try:
            async with core.api.delivery(refused, CAPS) as out:
                await out.park("telegram", TARGET)
                raise PermissionError("Forbidden: bot was blocked by the user")
        except PermissionError:
            pass
        assert sorted(await kinds(core)) == ["refund", "reserve", "reserve", "settle"]
        await core.instance.stop()  # even with this process gone, nothing is left parked
        assert await core.store.claim_parked("telegram", "another") == []


def test_a_reply_keeps_its_words_and_buttons_in_the_outbox() -> None:
    from bot.domain import Action
    reply = Reply(text="a fox", turn_id="t1", locale="zh-Hans", credits_used=4,
                  candidates=("t1", "t2"), actions=(Action("upscale", "t1", size="2K", cost=6,
                                                           index=1), Action("reroll", "t1",
                                                                            batch=2)))
    assert reply_from_json(reply_to_json(reply)) == reply


async def test_a_redelivered_result_opens_parked_and_a_second_stop_keeps_it_again(
        settings_factory: Factory) -> None:
    """What ``redeliver`` gives back is still in the outbox: opened ``parked``, nothing is
    written again, and a stop while it waits once more keeps it held for the start after."""
    settings = settings_factory()
    reply = await park_and_stop(settings)
    async with running(settings) as core:
        [parked] = await core.api.parked("telegram")
        again = await core.api.redeliver(parked)
        assert again is not None

        async def wait_again() -> None:
            async with core.api.delivery(again, CAPS, parked=True) as out:
                assert out.parked
                await asyncio.sleep(3600)  # told to wait once more

        task = asyncio.create_task(wait_again())
        await asyncio.sleep(0.1)
        task.cancel()  # the second stop
        await asyncio.gather(task, return_exceptions=True)
        assert [r.turn_id for r in await core.store.held_reservations()] == [reply.turn_id]
    async with running(settings) as core:
        [parked_again] = await core.api.parked("telegram")
        assert parked_again.delivery == parked.delivery
        assert parked_again.created_at == parked.created_at  # the first park's time


async def test_a_result_parked_again_keeps_its_clock_across_tries_and_restarts(
        settings_factory: Factory) -> None:
    """Discord takes a post out of the outbox before each try and parks it again on the next
    long 429: its worth still counts from when its image was ready, not from the latest park."""
    settings = settings_factory()
    async with running(settings) as core:
        reply = await core.api.imagine(ask("a lighthouse"))
        assert reply.ready_at is not None
        waiting = asyncio.Event()

        async def deliver() -> None:
            async with core.api.delivery(reply, CAPS) as out:
                await out.park("discord", TARGET)
                await asyncio.sleep(0.3)
                await out.unpark()  # tried again...
                await out.park("discord", TARGET)  # ...and told to wait once more
                waiting.set()
                await asyncio.sleep(3600)

        task = asyncio.create_task(deliver())
        await waiting.wait()
        task.cancel()  # the shutdown
        await asyncio.gather(task, return_exceptions=True)
    ready = datetime.fromtimestamp(reply.ready_at, UTC)
    async with running(settings) as core:
        [parked] = await core.api.parked("discord")
        assert abs(parked.created_at - ready) < timedelta(milliseconds=1)
        again = await core.api.redeliver(parked)
        assert again is not None and again.ready_at is not None
        assert abs(again.ready_at - reply.ready_at) < 0.001  # parked once more: the same clock


def test_a_parked_result_is_worth_what_is_left_of_its_patience() -> None:
    parked = Parked(delivery="t1", turn_ids=("t1",), platform="telegram", target="{}", reply="{}",
                    created_at=datetime.now(UTC) - timedelta(seconds=10))
    assert 19.0 < parked.left(30.0) <= 20.0  # counted from its created_at, not from now
    assert parked.left(5.0) == 0.0
