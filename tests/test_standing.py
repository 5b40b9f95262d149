"""QuotaTx.standing (one read) says what the single reads say, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.config import QuotaSection
from bot.domain import Actor, ChatRef
from bot.quotas import Price, Quotas
from bot.storage.standing import Standing, standing_of
from tests.helpers import FakeClock
from tests.store_engines import AnyStore

ANN = Actor("telegram", "7", "ann")
NEW = Actor("telegram", "8", "new")
GROUP = ChatRef("telegram", "-700", "group")


async def test_one_read_says_what_the_single_reads_say(store: AnyStore) -> None:
    clock = FakeClock(datetime(2024, 5, 10, 4, 0, tzinfo=UTC))
    quotas = Quotas(store, QuotaSection(user_daily_credits=50, chat_daily_credits=30),
                    admins=frozenset(), clock=clock)
    await store.set_user_flags(ANN.key, daily_limit=40, monthly_limit=None)
    await quotas.grant(ANN.key, 9)
    settled = await quotas.reserve(ANN, GROUP, Price(4, 0.04))
    await quotas.settle(settled.id)
    await quotas.reserve(ANN, GROUP, Price(5, 0.05))  # held
    await quotas.reserve(ANN, None, Price(3, 0.03))  # held, no chat
    for actor in (ANN, NEW):  # NEW: no row anywhere
        for chat_key in (GROUP.key, None, "telegram:-1"):
            for reserved in (True, False):
                async with store.quota_tx() as tx:
                    one = await tx.standing(actor.key, "2024-05-10", "2024-05", chat_key=chat_key,
                                            reserved=reserved)
                    many = await standing_of(tx, actor.key, "2024-05-10", "2024-05",
                                             chat_key=chat_key, reserved=reserved)
                assert one == many, (actor, chat_key, reserved)
    async with store.quota_tx() as tx:
        ann = await tx.standing(ANN.key, "2024-05-10", "2024-05", chat_key=GROUP.key,
                                reserved=True)
    assert ann == Standing(daily_limit=40, monthly_limit=None, used_day=12, used_month=12,
                           bonus=9, paid=0, chat_day=9, reserved=8)
