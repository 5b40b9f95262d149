"""Telegram at its own limits: drafts, bursts over the global rate, 429s across a restart, Stars.

The fake Bot API enforces Telegram's documented sending limits (tests/telegram_flood.py): over
them it answers 429 with retry_after, as Telegram does. Nothing here may drop a result.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import pytest

from adapters.telegram import Timing
from adapters.telegram.progress import Throttle
from bot.config import Settings
from bot.providers.demo import DemoProvider
from tests.fake_telegram import ALICE, FAST, BotHarness, FakeUser, running_bot
from tests.telegram_flood import FloodRules

Factory = Callable[..., Settings]
# PTB itself warns when it builds a RetryAfter (its retry_after type changes in v23).
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
USERS = [FakeUser(5000 + n, f"User{n}") for n in range(60)]


async def burst(bot: BotHarness, users: list[FakeUser]) -> list[float]:
    """Every user sends /imagine at once; seconds until each one's photo arrived."""
    fake, started = bot.fake, time.monotonic()
    for user in users:
        fake.user_sends("/imagine a lighthouse", user=user)
    arrived = []
    for user in users:
        photo = await fake.wait_for("sendPhoto", chat=fake.private(user), timeout=60)
        arrived.append(photo.at - started)
    return arrived


async def settled(bot: BotHarness, users: list[FakeUser]) -> None:
    """Every user's result was settled once: nothing refunded, nothing held."""
    for user in users:
        assert await bot.ledger(user, ["reserve", "settle"]) == ["reserve", "settle"], user
    assert await bot.c.store.held_reservations() == []


async def test_a_private_job_shows_a_draft_until_its_result_replaces_it(
        settings_factory: Factory) -> None:
    timing = Timing(edit_interval=0.5, draft_renew=1.0, tick=0.1)
    async with running_bot(settings_factory, providers={"demo": DemoProvider(delay=3.2)},
                           timing=timing) as bot:
        fake, chat = bot.fake, bot.fake.private(ALICE)
        fake.user_sends("/imagine a slow sunrise")
        first = await fake.wait_for("sendMessageDraft", timeout=2)
        assert first.params.get("text", "") == ""  # the client's own "Thinking..."
        photo = await fake.wait_for("sendPhoto", timeout=10)
        drafts = fake.calls_of("sendMessageDraft")
        texts = [d.params.get("text", "") for d in drafts]
        # "Thinking..." first, then the running time at each renewal, in steps of it.
        steps = [int(t.split("… ")[1].split()[0]) for t in texts if t]
        assert texts[0] == "" and len(steps) >= 2 and steps == sorted(set(steps)), texts
        assert texts[-1] != ""  # no last draft just before the photo
        # Renewed well within its 30 s life, one draft id throughout, gone once the photo landed.
        assert all(b.at - a.at < 2 for a, b in itertools.pairwise([*drafts, photo]))
        assert len({d.params["draft_id"] for d in drafts}) == 1
        assert fake.drafts.visible(chat["id"]) is None
        assert not fake.calls_of("sendChatAction") and not fake.calls_of("sendMessage")


async def test_drafts_switched_off_show_a_status_message_in_private_chats(
        settings_factory: Factory) -> None:
    """``[telegram] drafts = false`` (clients that show no drafts): the status message of groups."""
    async with running_bot(settings_factory, providers={"demo": DemoProvider(delay=1.0)},
                           telegram={"drafts": False}) as bot:
        fake, chat = bot.fake, bot.fake.private(ALICE)
        asked = fake.user_sends("/imagine a slow sunrise")
        status = await fake.wait_for("sendMessage", chat=chat, timeout=5)
        assert status.params.get("disable_notification") and status.reply_to == asked["message_id"]
        photo = await fake.wait_for("sendPhoto", chat=chat, timeout=10)
        deleted = await fake.wait_for("deleteMessage", chat=chat, timeout=5)
        assert deleted.params["message_id"] == status.message["message_id"]
        assert status.at < photo.at and not fake.calls_of("sendMessageDraft")
        await settled(bot, [ALICE])


async def test_a_skipped_status_is_tried_again_a_tick_later_not_at_once(
        settings_factory: Factory) -> None:
    """While the budget skips a group's status, the job's loop waits a tick between tries.

    Looking again every few ms (as it once did) made 500 waiting jobs starve the event loop.
    """
    async with running_bot(settings_factory, providers={"demo": DemoProvider(delay=6.0)}) as bot:
        fake, group = bot.fake, bot.fake.group()
        budget = bot.adapter.budget
        assert budget is not None
        budget.flooded(group["id"], 1.0)  # a 429: the group's paces are held (~4 s all told)
        started = time.monotonic()
        fake.user_sends("/imagine a lighthouse", chat=group)
        status = await fake.wait_for("sendMessage", chat=group, timeout=10)
        waited = status.at - started
        assert waited >= 1.0 and budget.sent["skipped"], waited  # it waited for the group
        # One try a tick (FAST: 0.1 s) at most, not one every loop turn.
        assert budget.sent["skipped"] <= waited / FAST.tick + 3, (budget.sent, waited)
        await fake.wait_for("sendPhoto", chat=group, timeout=10)


async def test_a_draft_refused_with_429_waits_its_retry_after(settings_factory: Factory) -> None:
    """The Bot API names no limit for drafts, but a 429 on one is waited out, not hammered."""
    timing = Timing(edit_interval=0.5, draft_renew=1.0, tick=0.1)
    async with running_bot(settings_factory, providers={"demo": DemoProvider(delay=3.0)},
                           timing=timing) as bot:
        fake, chat = bot.fake, bot.fake.private(ALICE)
        fake.fail_next("sendMessageDraft", retry_after=2)
        fake.user_sends("/imagine a slow sunrise")
        refused = await fake.wait_for("sendMessageDraft", ok=False, timeout=5)
        await fake.wait_for("sendChatAction", chat=chat, timeout=5)  # it stands in meanwhile
        draft = await fake.wait_for("sendMessageDraft", timeout=10)
        assert draft.at - refused.at >= 2.0
        assert len(fake.calls_of("sendMessageDraft", ok=False)) == 1
        await fake.wait_for("sendPhoto", chat=chat, timeout=10)


def test_repeated_chat_actions_share_one_cap() -> None:
    """Every job's chat action after its first draws from one shared allowance a second."""
    throttle = Throttle(repeats_per_second=5)
    assert sum(throttle.may_repeat_action(100.0) for _ in range(50)) == 5
    assert throttle.may_repeat_action(100.2) and not throttle.may_repeat_action(100.2)


async def test_a_burst_over_the_global_rate_is_delivered_in_full(
        settings_factory: Factory) -> None:
    """Telegram allows this bot 5 messages a second; the bot assumes 30 until 429s say less."""
    async with running_bot(settings_factory) as bot:
        bot.fake.flood = FloodRules(rate=5, burst=5)
        arrived = await burst(bot, USERS[:40])
        await settled(bot, USERS[:40])
        refused = bot.fake.flood.refused
        assert refused["global"] > 0 and not refused["chat"]
        assert len(bot.fake.calls_of("sendPhoto")) == 40
        # 40 photos at Telegram's 5 a second take 8 s; a few more for the waits it asked for.
        assert max(arrived) < 16, sorted(arrived)


async def test_a_burst_at_telegrams_own_rate_meets_no_429(settings_factory: Factory) -> None:
    async with running_bot(settings_factory, limits={"global_concurrency": 100}) as bot:
        arrived = await burst(bot, USERS)
        await settled(bot, USERS)
        assert bot.fake.counts(ok=False)["sendPhoto"] == 0
        assert len(bot.fake.calls_of("sendPhoto")) == len(USERS)
        # From the first photo on, the rest came close to the 30 a second allowed (the margin
        # is for a loaded machine; bench/bench_e2e.py measures the 1.2x target).
        assert max(arrived) - min(arrived) < 2 * len(USERS) / 30, sorted(arrived)


async def test_a_result_told_to_wait_outlives_a_restart(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.fail_next("sendPhoto", retry_after=3600)  # "come back in an hour"
        fake.user_sends("/imagine a patient fox")
        await fake.wait_for("sendPhoto", ok=False)
        await asyncio.sleep(0.3)  # parked meanwhile
        await bot.restart()  # the hour is not waited out in this process
        photo = await fake.wait_for("sendPhoto", timeout=15)
        assert photo.chat_id == ALICE.id and photo.text.startswith("a patient fox")
        await bot.turn(photo.message)
        assert await bot.ledger(ALICE, ["reserve", "settle"]) == ["reserve", "settle"]
        assert len(fake.calls_of("sendPhoto")) == 1
        assert await bot.c.store.claim_parked("telegram", "anyone") == []


async def test_paid_broadcasts_only_when_the_queue_is_long(settings_factory: Factory) -> None:
    telegram = {"paid_broadcast": True, "paid_broadcast_after_seconds": 1.0}
    async with running_bot(settings_factory, telegram=telegram, timing=FAST) as bot:
        fake = bot.fake
        fake.flood = FloodRules(rate=5, burst=5)
        fake.user_sends("/imagine one alone", user=USERS[0])
        alone = await fake.wait_for("sendPhoto", chat=fake.private(USERS[0]))
        assert "allow_paid_broadcast" not in alone.params  # no queue: free
        await burst(bot, USERS[1:41])
        paid = [c for c in fake.calls_of("sendPhoto") if c.params.get("allow_paid_broadcast")]
        assert paid and fake.flood.stars_spent == pytest.approx(0.1 * len(paid))
        assert len(paid) < 40  # the head of the queue went free
        await settled(bot, USERS[:41])


async def test_paid_broadcasts_telegram_refuses_go_out_free(settings_factory: Factory) -> None:
    telegram = {"paid_broadcast": True, "paid_broadcast_after_seconds": 0.5}
    async with running_bot(settings_factory, telegram=telegram, timing=FAST) as bot:
        fake = bot.fake
        fake.flood = FloodRules(rate=5, burst=5, stars_balance=0.0)  # no Stars to pay with
        await burst(bot, USERS[:20])
        refused = [c for c in fake.calls_of("sendPhoto", ok=False)
                   if c.params.get("allow_paid_broadcast")]
        assert len(refused) == 1  # one paid send is tried before others may pay
        assert not [c for c in fake.calls_of("sendPhoto") if c.params.get("allow_paid_broadcast")]
        await settled(bot, USERS[:20])


async def test_a_result_still_on_its_way_at_a_shutdown_arrives_once_and_is_paid_once(
        settings_factory: Factory) -> None:
    """Telegram has the photo, its answer is still coming back when the process stops."""
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.fail_next("sendPhoto", code=429, retry_after=1)  # parks the result in the outbox
        # The answer comes back after the shutdown stopped waiting for running work (grace
        # 1 s + 5 s) and cancelled the delivery: the photo is shown, the bot has not heard.
        fake.answer_after["sendPhoto"] = 8.0
        fake.user_sends("/imagine a lighthouse")
        await fake.wait_for("sendPhoto", timeout=20)
        await bot.restart()  # the next start claims what the outbox still holds
        fake.answer_after.clear()
        await fake.expect_none("sendPhoto", within=2.0)
        assert len(fake.calls_of("sendPhoto")) == 1
        await settled(bot, [ALICE])
        photo = fake.calls_of("sendPhoto")[0].result
        assert (await bot.turn(photo)).id  # bound: a reply to it edits the result


async def test_results_queued_behind_the_budget_outlive_a_restart(
        settings_factory: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Telegram allows one message a second here: a burst queues for longer than a restart."""
    import adapters.telegram.app as app
    from adapters.telegram.ratelimit import Limits, SendBudget

    slow = Limits(rate=1, burst=1)
    monkeypatch.setattr(app, "send_budget", lambda url, prefix: SendBudget(slow))
    users = USERS[:15]
    async with running_bot(settings_factory, limits={"global_concurrency": 20}) as bot:
        fake = bot.fake
        for user in users:
            fake.user_sends("/imagine a lighthouse", user=user)
        await fake.wait_for("sendPhoto", timeout=20)
        await bot.restart()  # a dozen results still queued: those parked are kept
        async with asyncio.timeout(60):
            while {c.chat_id for c in fake.calls_of("sendPhoto")} != {  # noqa: ASYNC110
                    u.id for u in users}:
                await asyncio.sleep(0.2)
        assert len(fake.calls_of("sendPhoto")) == len(users)
        await settled(bot, users)
