"""Bot API calls per job, from the command to the delivered result, with the shipped timing."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from adapters.telegram import Timing
from bot.config import Settings
from bot.providers.demo import DemoProvider
from tests.fake_telegram import ALICE, BOB, BotHarness, FakeUser, running_bot

Factory = Callable[..., Settings]
#: A 1K job as Gemini serves one on a normal day.
JOB_SECONDS = 8.0
#: What the user is shown is all that counts; commands, menus and polling are not the job's.
NOT_THE_JOB = {"getUpdates", "getMe", "setMyCommands", "deleteWebhook", "getFile"}


async def one_job(bot: BotHarness, chat: dict[str, Any], user: FakeUser) -> Counter[str]:
    """Calls the bot made in ``chat`` for one /imagine by ``user``, result included."""
    fake = bot.fake
    before = fake.counts(chat)
    fake.user_sends("/imagine a lighthouse", chat=chat, user=user)
    await fake.wait_for("sendPhoto", chat=chat, timeout=JOB_SECONDS + 20)
    seen: Counter[str] | None = None
    while seen != fake.counts(chat):  # until the cleanup (if any) is done: 1.5 s without a call
        seen = fake.counts(chat)
        await asyncio.sleep(1.5)
    after = fake.counts(chat)
    return Counter({m: n for m, n in (after - before).items() if m not in NOT_THE_JOB})


async def test_a_1k_job_costs_feedback_and_result(settings_factory: Factory) -> None:
    provider = DemoProvider(delay=JOB_SECONDS)
    async with running_bot(settings_factory, providers={"demo": provider},
                           timing=Timing()) as bot:
        # Two people at once (one job each may run): the two chats' calls are counted apart.
        private, group = await asyncio.gather(one_job(bot, bot.fake.private(ALICE), ALICE),
                                              one_job(bot, bot.fake.group(), BOB))
    print(f"calls per 1K job ({JOB_SECONDS:.0f} s): private {dict(private)}, group {dict(group)}")
    assert private["sendPhoto"] == 1 and sum(private.values()) <= 2, private
    assert group["sendPhoto"] == 1 and sum(group.values()) <= 3, group
