"""Telegram's send budget shared through Redis: three processes' budgets together keep the bot's
overall rate and each chat's pace, and a 429 seen by one holds the others back."""

from __future__ import annotations

import asyncio
import time

from adapters.telegram.ratelimit import Lane, Limits
from adapters.telegram.ratelimit_redis import RedisSendBudget
from tests.redis_service import REDIS_URL, redis_prefix


async def test_three_processes_keep_one_overall_rate() -> None:
    async with redis_prefix() as prefix:
        limits = Limits(rate=10.0, burst=5, chat_per_second=100.0, chat_burst=100)
        budgets = [RedisSendBudget(REDIS_URL, prefix, limits) for _ in range(3)]
        sent: list[float] = []

        async def send(budget: RedisSendBudget, chat: int) -> None:
            await budget.take(chat, Lane.RESULT)
            sent.append(time.monotonic())

        start = time.monotonic()
        # 30 sends, 10 per process: alone each would send its 10 at once (its own pace: 10/s)
        await asyncio.gather(*(send(budgets[i % 3], 1000 + i) for i in range(30)))
        # 10 a second across the three (a moving one-second window): the 30 take >= 2 s,
        # where each process alone, at its own 10 a second, would have sent its 10 in 1 s
        assert len(sent) == 30 and time.monotonic() - start > 1.9
        for budget in budgets:
            budget.close()


async def test_a_chat_pace_and_a_429_hold_every_process() -> None:
    async with redis_prefix() as prefix:
        budgets = [RedisSendBudget(REDIS_URL, prefix, Limits()) for _ in range(2)]
        start = time.monotonic()
        for i in range(3):  # one private chat, its burst of 2 then one a second, across both
            await budgets[i % 2].take(42, Lane.REPLY)
        assert time.monotonic() - start > 0.9
        budgets[0].flooded(7, 1.0)  # an overall 429 in one process...
        await asyncio.sleep(0.05)
        held = time.monotonic()
        await budgets[1].take(8, Lane.RESULT)  # ...holds the other back as long as Telegram asked
        assert time.monotonic() - held > 0.8
        for budget in budgets:
            budget.close()
