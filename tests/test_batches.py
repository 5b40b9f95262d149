"""Issue 16.1: batches — N candidates held up front, one queued job, partial failure refunded."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from bot.config import Settings
from bot.domain import Action, Capabilities, MessageRef
from bot.errors import UpstreamError
from bot.providers.base import ProviderResult
from tests.fake_upstream import png
from tests.outcomes import jobs
from tests.test_service import ALICE, CHAT, FakeProvider, ask, kinds, running

Factory = Callable[..., Settings]
WEB = Capabilities(caption_limit=4096, photo_budget=None)


def one_fails() -> Callable[[], object]:
    """Answers: ok, ok, a 500 the route gives up on, ok, ..."""
    count = itertools.count()

    def outcome() -> object:
        if next(count) == 2:
            return UpstreamError("boom")
        return ProviderResult(images=(_png(),), text="", finish_reason="STOP")
    return outcome


def _png():  # type: ignore[no-untyped-def]
    from bot.domain import ImageData
    return ImageData(png(8, 8), "image/png", 8, 8)


async def test_a_batch_of_four_with_one_failure_delivers_three_and_refunds_one(
        settings_factory: Factory) -> None:
    provider = FakeProvider(one_fails())
    settings = settings_factory()
    async with running(settings, providers={"demo": provider}) as core:
        reply = await jobs(core).imagine(ask("four foxes", n=4))
        assert reply.ok, reply.text
        assert len(provider.requests) == 4 and len(reply.images) == 3
        assert len(reply.candidates) == 3 and reply.turn_id == reply.candidates[0]
        assert "Batch: 3 of 4. 1 failed and cost nothing." in reply.text
        # All four held before anything ran; the failed one refunded at once.
        assert sorted(await kinds(core)) == sorted(["reserve"] * 4 + ["refund"])
        labels = [(a.kind, a.index) for a in reply.actions]
        assert labels == [("upscale", 1), ("upscale", 2), ("upscale", 3), ("variations", 1),
                          ("variations", 2), ("variations", 3), ("reroll", None)]
        reroll = reply.actions[-1]
        assert reroll.batch == 3 and Action.decode(reroll.encode()) == Action(
            "reroll", reply.candidates[0], batch=3)
        async with core.api.delivery(reply, WEB) as out:
            await out.sent([MessageRef("web", "c", reply.candidates[0])])
        assert sorted(await kinds(core)) == sorted(["reserve"] * 4 + ["refund"] + ["settle"] * 3)
        assert await core.store.held_reservations() == []
        credits = reply.credits_used
        assert (await core.service.usage(ALICE)).credits_left == 100 - credits


async def test_a_batch_is_held_whole_or_not_at_all(settings_factory: Factory) -> None:
    provider = FakeProvider()
    settings = settings_factory(quota={"user_daily_credits": 10})  # 4 credits each: two fit, not four
    async with running(settings, providers={"demo": provider}) as core:
        reply = await jobs(core).imagine(ask("four foxes", n=4))
        assert reply.error == "error.quota" and "it costs 16" in reply.text, reply.text
        assert "has 10 left" in reply.text
        assert provider.requests == []
        assert await core.store.held_reservations() == []
        assert (await core.service.usage(ALICE)).credits_left == 10


async def test_an_abandoned_batch_delivery_refunds_every_candidate_once(
        settings_factory: Factory) -> None:
    async with running(settings_factory(), providers={"demo": FakeProvider()}) as core:
        reply = await jobs(core).imagine(ask("two owls", n=2))
        try:
            async with core.api.delivery(reply, WEB) as out:
                await out.sent_each([[MessageRef("web", "c", "m1")], []])
                raise RuntimeError("the second upload failed for good")
        except RuntimeError:
            pass
        assert sorted(await kinds(core)) == ["refund", "reserve", "reserve", "settle"]
        assert await core.store.held_reservations() == []


async def test_rerolling_a_batch_makes_the_batch_again(settings_factory: Factory) -> None:
    provider = FakeProvider()
    async with running(settings_factory(), providers={"demo": provider}) as core:
        reply = await jobs(core).imagine(ask("two owls", n=2))
        async with core.api.delivery(reply, WEB) as out:
            await out.sent([MessageRef("web", "c", "m1")])
        again = await jobs(core).act(ALICE, CHAT, reply.actions[-1])
        assert again.ok and len(again.images) == 2 and len(provider.requests) == 4


async def test_v_buttons_send_the_chosen_candidate_with_a_hidden_instruction(
        settings_factory: Factory) -> None:
    provider = FakeProvider()
    async with running(settings_factory(), providers={"demo": provider}) as core:
        reply = await jobs(core).imagine(ask("two owls", n=2, vary="strong"))
        async with core.api.delivery(reply, WEB) as out:
            await out.sent([MessageRef("web", "c", "m1")])
        v2 = next(a for a in reply.actions if a.kind == "variations" and a.index == 2)
        assert Action.decode(v2.encode()) == Action("variations", reply.candidates[1],
                                                    vary="strong")
        varied = await jobs(core).act(ALICE, CHAT, Action.decode(v2.encode()))  # type: ignore[arg-type]
        assert varied.ok and varied.text.startswith("two owls\n🎲 Variation\n")
        sent = provider.requests[-1]
        assert sent.prompt.startswith("Make a bold variation") and "two owls" in sent.prompt
        [ref] = sent.references  # the chosen candidate, cleaned like any reference
        assert (ref.width, ref.height) == (reply.images[1].width, reply.images[1].height)
        assert sent.history == ()
