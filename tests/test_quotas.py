"""The quota ledger on both engines (a real SQLite file, a fresh PostgreSQL schema): pricing,
windows, resets in a time zone, grants, admins, concurrency, crash recovery, and a stateful
property test of the books."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bot.config import QuotaSection, Settings
from bot.domain import Actor, ChatRef
from bot.errors import BadGrant, QuotaExceeded
from bot.quotas import Price, Quotas
from bot.storage.postgres import PostgresStore
from bot.storage.sqlite import SqliteStore
from tests import store_engines as engines
from tests.conftest import StoreFactory
from tests.helpers import FakeClock
from tests.store_engines import AnyStore, fetch

ROOT = Path(__file__).resolve().parent.parent
ALICE = Actor("telegram", "1", "alice")
BOB = Actor("telegram", "2", "bob")
CAROL = Actor("discord", "3", "carol")
ADMIN = Actor("telegram", "99", "admin")
GROUP = ChatRef("telegram", "-100", "group")
PRIVATE = ChatRef("telegram", "1", "private")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2024, 5, 10, 4, 0, tzinfo=UTC))


QuotasFactory = Callable[..., Quotas]


@pytest.fixture
def make_quotas(store: AnyStore, clock: FakeClock) -> QuotasFactory:
    def make(**quota: Any) -> Quotas:
        return Quotas(store, QuotaSection(**quota), admins=frozenset({ADMIN.key}), clock=clock)
    return make


def p(credits: int, usd: float | None = None) -> Price:
    return Price(credits, round(credits * 0.01, 6) if usd is None else usd)


async def used(store: AnyStore, actor: Actor, *, day: str | None = None,
               month: str | None = None) -> int:
    async with store.quota_tx() as tx:
        return await tx.used_credits(actor.key, day=day, month=month)


# ----- pricing --------------------------------------------------------------------------------


def test_pricing_from_the_catalog(make_quotas: QuotasFactory) -> None:
    catalog = Settings().catalog()
    quotas = make_quotas()
    assert quotas.price(catalog["nano-banana-2.1"], "1K") == Price(4, 0.0336)  # ceil(3.36)
    assert quotas.price(catalog["nano-banana-2.1"], "1K", count=2) == Price(8, 0.0672)
    assert quotas.price(catalog["nano-banana-pro"], "4K") == Price(24, 0.24)
    assert quotas.price(catalog["nano-banana-2.1"], "4K") == Price(12, 0.1134)
    cheaper = make_quotas(credit_usd=0.02)
    assert cheaper.price(catalog["nano-banana-2-lite"], "1K").credits == 2  # ceil(1.68)
    assert cheaper.price(catalog["nano-banana-pro"], "2K").credits == 7  # ceil(6.7)
    assert make_quotas(credit_usd=0.1).price(catalog["nano-banana-2.1"], "1K").credits == 1


def test_pricing_overrides(make_quotas: QuotasFactory) -> None:
    custom = Settings.model_validate({"models": {
        "nano-banana": {"credits": {"1K": 1}},  # a retired name: its successor's table
        "nano-banana-pro": {"prices": {"1K": 0.5, "2K": 0.5, "4K": 1.0}},
    }}).catalog()
    quotas = make_quotas()
    assert quotas.price(custom["nano-banana-2.1"], "1K") == Price(1, 0.0336)  # USD still counts
    assert quotas.price(custom["nano-banana-pro"], "4K") == Price(100, 1.0)


# ----- reserve -> settle | refund -------------------------------------------------------------


async def test_reserve_settle_refund(make_quotas: QuotasFactory, store: AnyStore) -> None:
    quotas = make_quotas(user_daily_credits=20)
    first = await quotas.reserve(ALICE, PRIVATE, p(4), model="nano-banana", size="1K")
    assert (first.credits, first.bonus, first.state) == (4, 0, "held")
    usage = await quotas.usage(ALICE)
    assert usage.reserved == 4 and usage.window("user_daily").used == 4  # type: ignore[union-attr]

    assert await quotas.settle(first.id) is True
    assert await quotas.settle(first.id) is False  # exactly once
    assert await quotas.refund(first.id) is False  # a settled job is not refunded
    usage = await quotas.usage(ALICE)
    assert usage.reserved == 0 and usage.window("user_daily").used == 4  # type: ignore[union-attr]

    second = await quotas.reserve(ALICE, PRIVATE, p(4))
    assert await quotas.refund(second.id, "upstream") is True
    assert await quotas.refund(second.id) is False
    assert await quotas.settle(second.id) is False
    usage = await quotas.usage(ALICE)
    assert usage.reserved == 0 and usage.window("user_daily").used == 4  # type: ignore[union-attr]
    assert await quotas.settle("no-such-reservation") is False

    rows = await store.ledger(ALICE.key)
    assert [(r.kind, r.credits, r.reservation_id) for r in rows] == [
        ("reserve", 4, first.id), ("settle", 0, first.id),
        ("reserve", 4, second.id), ("refund", -4, second.id),
    ]
    assert rows[0].model == "nano-banana" and rows[0].size == "1K"
    assert rows[3].note == "upstream"


async def test_daily_window(make_quotas: QuotasFactory, clock: FakeClock,
                            store: AnyStore) -> None:
    quotas = make_quotas(user_daily_credits=10, user_monthly_credits=1000, timezone="UTC")
    await quotas.reserve(ALICE, None, p(4))
    await quotas.reserve(ALICE, None, p(4))
    with pytest.raises(QuotaExceeded) as info:
        await quotas.reserve(ALICE, None, p(4))
    assert info.value.params["window"] == "user_daily"
    assert info.value.params["left"] == 2 and info.value.params["cost"] == 4
    assert info.value.params["resets_at"] == datetime(2024, 5, 11, tzinfo=UTC)
    await quotas.reserve(ALICE, None, p(2))  # what is left can still be spent
    await quotas.reserve(BOB, None, p(4))  # windows are per user
    clock.advance(hours=20)  # 2024-05-11 00:00 UTC
    await quotas.reserve(ALICE, None, p(10))
    assert await used(store, ALICE, day="2024-05-10") == 10
    assert await used(store, ALICE, day="2024-05-11") == 10
    assert await used(store, ALICE, month="2024-05") == 20


async def test_monthly_window(make_quotas: QuotasFactory, clock: FakeClock) -> None:
    quotas = make_quotas(user_daily_credits=100, user_monthly_credits=10, timezone="UTC")
    await quotas.reserve(ALICE, None, p(8))
    clock.advance(days=1)
    with pytest.raises(QuotaExceeded) as info:
        await quotas.reserve(ALICE, None, p(4))
    assert info.value.params["window"] == "user_monthly"
    assert info.value.params["left"] == 2
    assert info.value.params["resets_at"] == datetime(2024, 6, 1, tzinfo=UTC)
    clock.now = datetime(2024, 6, 1, 0, 0, 1, tzinfo=UTC)
    await quotas.reserve(ALICE, None, p(10))


async def test_the_window_named_is_the_one_that_blocks(make_quotas: QuotasFactory,
                                                      clock: FakeClock) -> None:
    """Daily and monthly both short: the user must be told about the month, not "tomorrow"."""
    quotas = make_quotas(user_daily_credits=10, user_monthly_credits=12, timezone="UTC")
    await quotas.reserve(ALICE, None, p(10))
    with pytest.raises(QuotaExceeded) as info:
        await quotas.reserve(ALICE, None, p(4))
    assert info.value.params["window"] == "user_monthly"
    assert info.value.params["resets_at"] == datetime(2024, 6, 1, tzinfo=UTC)
    clock.advance(days=1)  # indeed, tomorrow does not help
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(ALICE, None, p(4))
    # Only the day is short: the daily window is named.
    daily = make_quotas(user_daily_credits=10, user_monthly_credits=100, timezone="UTC")
    await daily.reserve(BOB, None, p(8))
    with pytest.raises(QuotaExceeded) as info:
        await daily.reserve(BOB, None, p(4))
    assert info.value.params["window"] == "user_daily"


async def test_refund_goes_back_to_the_window_it_was_charged(
        make_quotas: QuotasFactory, clock: FakeClock, store: AnyStore) -> None:
    quotas = make_quotas(user_daily_credits=10, user_monthly_credits=15,
                         timezone="Asia/Shanghai")
    clock.now = datetime(2024, 5, 31, 15, 50, tzinfo=UTC)  # 23:50 on May 31 in Shanghai
    late = await quotas.reserve(ALICE, None, p(10))
    clock.advance(minutes=20)  # 00:10 on June 1
    fresh = await quotas.reserve(ALICE, None, p(6))
    assert (fresh.day, fresh.month) == ("2024-06-01", "2024-06")
    assert await quotas.refund(late.id) is True
    # May's day and month got their credits back; June's windows are untouched by the refund.
    assert await used(store, ALICE, day="2024-05-31") == 0
    assert await used(store, ALICE, month="2024-05") == 0
    assert await used(store, ALICE, day="2024-06-01") == 6
    usage = await quotas.usage(ALICE)
    assert usage.window("user_daily").used == 6  # type: ignore[union-attr]
    assert usage.window("user_monthly").used == 6  # type: ignore[union-attr]
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(ALICE, None, p(5))  # June has 4 left today, not 14


# ----- time zones -----------------------------------------------------------------------------


def z(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("zone", "now", "day", "day_reset", "month_reset"), [
    # Shanghai is UTC+8 all year: the day turns at 16:00 UTC.
    ("Asia/Shanghai", z(2024, 5, 1, 15, 59), "2024-05-01", z(2024, 5, 1, 16), z(2024, 5, 31, 16)),
    ("Asia/Shanghai", z(2024, 5, 1, 16, 0), "2024-05-02", z(2024, 5, 2, 16), z(2024, 5, 31, 16)),
    ("Asia/Shanghai", z(2024, 12, 31, 16, 30), "2025-01-01", z(2025, 1, 1, 16),
     z(2025, 1, 31, 16)),
    # New York, spring forward on 2024-03-10: that day has 23 hours.
    ("America/New_York", z(2024, 3, 10, 4, 30), "2024-03-09", z(2024, 3, 10, 5),
     z(2024, 4, 1, 4)),
    ("America/New_York", z(2024, 3, 10, 12), "2024-03-10", z(2024, 3, 11, 4), z(2024, 4, 1, 4)),
    # ... and fall back on 2024-11-03: 25 hours, including the repeated 01:xx.
    ("America/New_York", z(2024, 11, 3, 5, 30), "2024-11-03", z(2024, 11, 4, 5),
     z(2024, 12, 1, 5)),
    ("America/New_York", z(2024, 11, 3, 6, 30), "2024-11-03", z(2024, 11, 4, 5),
     z(2024, 12, 1, 5)),
    ("America/New_York", z(2024, 12, 31, 20), "2024-12-31", z(2025, 1, 1, 5), z(2025, 1, 1, 5)),
    ("UTC", z(2024, 2, 29, 23, 59), "2024-02-29", z(2024, 3, 1), z(2024, 3, 1)),
    # Santiago springs forward at midnight: 2024-09-08 00:00 does not exist (it is 01:00).
    ("America/Santiago", z(2024, 9, 8, 3, 30), "2024-09-07", z(2024, 9, 8, 4),
     z(2024, 10, 1, 3)),
    ("America/Santiago", z(2024, 9, 8, 12), "2024-09-08", z(2024, 9, 9, 3), z(2024, 10, 1, 3)),
])
async def test_reset_times_in_a_zone(make_quotas: QuotasFactory, clock: FakeClock, zone: str,
                                     now: datetime, day: str, day_reset: datetime,
                                     month_reset: datetime) -> None:
    clock.now = now
    quotas = make_quotas(timezone=zone, user_daily_credits=5)
    assert quotas.today() == day
    res = await quotas.reserve(ALICE, None, p(5))
    assert res.day == day and res.month == day[:7]
    usage = await quotas.usage(ALICE)
    assert usage.window("user_daily").resets_at == day_reset  # type: ignore[union-attr]
    assert usage.window("user_monthly").resets_at == month_reset  # type: ignore[union-attr]
    with pytest.raises(QuotaExceeded) as info:
        await quotas.reserve(ALICE, None, p(1))
    assert info.value.params["resets_at"] == day_reset
    # One second before the reset nothing changes; at the reset the day's credits are back.
    clock.now = day_reset - timedelta(seconds=1)
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(ALICE, None, p(1))
    clock.now = day_reset
    assert quotas.today() != day
    await quotas.reserve(ALICE, None, p(5))


async def test_day_boundary_in_shanghai_is_not_utc_midnight(make_quotas: QuotasFactory,
                                                            clock: FakeClock) -> None:
    quotas = make_quotas(timezone="Asia/Shanghai", user_daily_credits=4)
    clock.now = z(2024, 5, 1, 23, 30)  # 07:30 on May 2 in Shanghai
    await quotas.reserve(ALICE, None, p(4))
    clock.now = z(2024, 5, 2, 0, 30)  # UTC midnight passed, Shanghai is still on May 2
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(ALICE, None, p(1))
    clock.now = z(2024, 5, 2, 16, 0)  # Shanghai midnight
    await quotas.reserve(ALICE, None, p(4))


async def test_dst_day_is_23_hours_long(make_quotas: QuotasFactory, clock: FakeClock) -> None:
    quotas = make_quotas(timezone="America/New_York", user_daily_credits=4)
    clock.now = z(2024, 3, 10, 5, 0)  # 00:00 EST, the start of the short day
    assert quotas.today() == "2024-03-10"
    await quotas.reserve(ALICE, None, p(4))
    clock.advance(hours=22, minutes=59)
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(ALICE, None, p(1))
    clock.advance(minutes=1)  # 23 hours later it is midnight EDT
    assert clock.now.astimezone(ZoneInfo("America/New_York")).hour == 0
    assert quotas.today() == "2024-03-11"
    await quotas.reserve(ALICE, None, p(4))


# ----- chat pool, global cap, admins, grants --------------------------------------------------


async def test_chat_pool_applies_to_group_chats_only(make_quotas: QuotasFactory) -> None:
    quotas = make_quotas(user_daily_credits=100, chat_daily_credits=10)
    await quotas.reserve(ALICE, GROUP, p(4))
    await quotas.reserve(BOB, GROUP, p(4))
    with pytest.raises(QuotaExceeded) as info:
        await quotas.reserve(CAROL, GROUP, p(4))
    assert info.value.params["window"] == "chat_daily" and info.value.params["left"] == 2
    await quotas.reserve(CAROL, GROUP, p(2))
    # Private chats (and other groups) draw on the users' own allowance only.
    await quotas.reserve(ALICE, ChatRef("telegram", "1", "private"), p(50))
    await quotas.reserve(BOB, ChatRef("telegram", "-200", "group"), p(10))
    group_usage = await quotas.usage(ALICE, GROUP)
    assert group_usage.window("chat_daily").used == 10  # type: ignore[union-attr]
    assert (await quotas.usage(ALICE, PRIVATE)).window("chat_daily") is None
    assert (await quotas.usage(ALICE)).window("chat_daily") is None


async def test_chat_pool_off_by_default(make_quotas: QuotasFactory) -> None:
    quotas = make_quotas(user_daily_credits=100)
    await quotas.reserve(ALICE, GROUP, p(60))
    await quotas.reserve(BOB, GROUP, p(60))
    assert (await quotas.usage(ALICE, GROUP)).window("chat_daily") is None


async def test_chat_pool_refund_frees_the_pool(make_quotas: QuotasFactory) -> None:
    quotas = make_quotas(user_daily_credits=2, chat_daily_credits=6)
    await quotas.grant(ALICE.key, 10)
    res = await quotas.reserve(ALICE, GROUP, p(6))  # 2 allowance + 4 bonus
    assert (res.credits, res.bonus) == (2, 4)
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(BOB, GROUP, p(1))
    await quotas.refund(res.id)
    await quotas.reserve(BOB, GROUP, p(2))


async def test_global_usd_cap_applies_to_admins_too(make_quotas: QuotasFactory,
                                                    clock: FakeClock) -> None:
    quotas = make_quotas(global_daily_usd=0.1, user_daily_credits=100)
    await quotas.reserve(ADMIN, None, p(4, 0.039))
    await quotas.reserve(ALICE, None, p(4, 0.039))
    with pytest.raises(QuotaExceeded) as info:
        await quotas.reserve(ADMIN, None, p(4, 0.039))
    assert info.value.params["window"] == "global_daily_usd"
    assert info.value.params["left"] == pytest.approx(0.022)
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(BOB, None, p(4, 0.039))
    await quotas.reserve(BOB, None, p(2, 0.02))  # exactly up to the cap is fine
    usage = await quotas.usage(ADMIN)
    assert usage.window("global_daily_usd").used == pytest.approx(0.098)  # type: ignore[union-attr]
    clock.advance(days=1)
    await quotas.reserve(ADMIN, None, p(4, 0.039))


async def test_global_cap_zero_is_off(make_quotas: QuotasFactory) -> None:
    quotas = make_quotas(global_daily_usd=0, user_daily_credits=1000, user_monthly_credits=5000)
    for _ in range(5):
        await quotas.reserve(ALICE, None, p(100, 100.0))
    assert (await quotas.usage(ALICE)).window("global_daily_usd") is None


async def test_admins_are_exempt_from_credit_windows(make_quotas: QuotasFactory) -> None:
    quotas = make_quotas(user_daily_credits=0, user_monthly_credits=0, chat_daily_credits=1)
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(ALICE, None, p(1))
    await quotas.reserve(ADMIN, GROUP, p(50))  # listed in [bot] admins
    vouched = Actor("discord", "5", is_admin=True)  # a moderator vouched by the adapter
    with pytest.raises(QuotaExceeded):  # moderating others' results does not make images free
        await quotas.reserve(vouched, GROUP, p(50))
    assert quotas.is_exempt(ADMIN) and not quotas.is_exempt(vouched) and not quotas.is_exempt(ALICE)
    assert (await quotas.usage(ADMIN)).exempt is True
    assert (await quotas.usage(ALICE)).exempt is False


async def test_grants_are_spent_after_the_allowance(make_quotas: QuotasFactory,
                                                    store: AnyStore) -> None:
    quotas = make_quotas(user_daily_credits=6)
    await quotas.grant(ALICE.key, 10, by=ADMIN.key)
    first = await quotas.reserve(ALICE, None, p(4))
    assert (first.credits, first.bonus) == (4, 0)
    assert (await quotas.usage(ALICE)).bonus == 10
    second = await quotas.reserve(ALICE, None, p(4))
    assert (second.credits, second.bonus) == (2, 2)  # the last 2 allowance credits, then bonus
    third = await quotas.reserve(ALICE, None, p(8))
    assert (third.credits, third.bonus) == (0, 8)
    assert (await quotas.usage(ALICE)).bonus == 0
    with pytest.raises(QuotaExceeded) as info:
        await quotas.reserve(ALICE, None, p(1))
    assert info.value.params["left"] == 0
    await quotas.refund(third.id)  # bonus credits come back on refund
    usage = await quotas.usage(ALICE)
    assert usage.bonus == 8 and usage.credits_left == 8
    await quotas.settle(second.id)
    assert (await quotas.usage(ALICE)).bonus == 8
    grant = next(r for r in await store.ledger(ALICE.key) if r.kind == "grant")
    assert grant.bonus == 10 and grant.note == f"by {ADMIN.key}"


async def test_grants_only_mode(make_quotas: QuotasFactory) -> None:
    quotas = make_quotas(user_daily_credits=0, user_monthly_credits=0)
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(ALICE, None, p(1))
    await quotas.grant(ALICE.key, 5)
    res = await quotas.reserve(ALICE, None, p(5))
    assert (res.credits, res.bonus) == (0, 5)


async def test_negative_grant_never_goes_below_zero(make_quotas: QuotasFactory) -> None:
    quotas = make_quotas()
    await quotas.grant(ALICE.key, 5)
    await quotas.grant(ALICE.key, -3)
    assert (await quotas.usage(ALICE)).bonus == 2
    await quotas.grant(ALICE.key, -100)
    assert (await quotas.usage(ALICE)).bonus == 0
    await quotas.grant(BOB.key, -7)
    assert (await quotas.usage(BOB)).bonus == 0


async def test_per_user_limit_overrides(make_quotas: QuotasFactory, store: AnyStore) -> None:
    quotas = make_quotas(user_daily_credits=100, user_monthly_credits=1000)
    await store.set_user_flags(ALICE.key, daily_limit=3)
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(ALICE, None, p(4))
    await quotas.reserve(ALICE, None, p(3))
    await quotas.reserve(BOB, None, p(4))
    usage = await quotas.usage(ALICE)
    assert usage.window("user_daily").limit == 3  # type: ignore[union-attr]
    assert usage.credits_left == 0


async def test_usage_reports_every_window(make_quotas: QuotasFactory, clock: FakeClock) -> None:
    clock.now = z(2024, 5, 10, 12)
    quotas = make_quotas(user_daily_credits=20, user_monthly_credits=100, chat_daily_credits=50,
                         global_daily_usd=2.0, timezone="Asia/Shanghai")
    await quotas.grant(ALICE.key, 3)
    res = await quotas.reserve(ALICE, GROUP, p(4))
    usage = await quotas.usage(ALICE, GROUP, running=1)
    assert [w.name for w in usage.windows] == ["user_daily", "user_monthly", "chat_daily",
                                               "global_daily_usd"]
    assert [w.left for w in usage.windows] == [16, 96, 46, pytest.approx(1.96)]
    assert [w.resets_at for w in usage.windows] == [z(2024, 5, 10, 16), z(2024, 5, 31, 16),
                                                     z(2024, 5, 10, 16), z(2024, 5, 10, 16)]
    assert usage.reserved == 4 and usage.bonus == 3 and usage.running == 1
    assert usage.credits_left == 16 + 3
    await quotas.settle(res.id)
    assert (await quotas.usage(ALICE, GROUP)).reserved == 0


# ----- concurrency and crashes ----------------------------------------------------------------


async def test_200_concurrent_reservations_against_5_credits(make_quotas: QuotasFactory) -> None:
    quotas = make_quotas(user_daily_credits=5, user_monthly_credits=100)
    results = await asyncio.gather(*(quotas.reserve(ALICE, None, p(1)) for _ in range(200)),
                                   return_exceptions=True)
    granted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(granted) == 5
    assert len(refused) == 195 and all(isinstance(r, QuotaExceeded) for r in refused)
    assert len({r.id for r in granted}) == 5
    assert (await quotas.usage(ALICE)).window("user_daily").used == 5  # type: ignore[union-attr]


async def test_concurrent_reservations_across_two_connections(store_factory: StoreFactory,
                                                              clock: FakeClock) -> None:
    """Two stores on one database (as two processes would be): SQLite's BEGIN IMMEDIATE, or
    PostgreSQL's row locks, serialise them."""
    stores = [store_factory(), store_factory()]
    for s in stores:
        await s.open()
    try:
        section = QuotaSection(user_daily_credits=5, chat_daily_credits=7,
                               global_daily_usd=0.0)
        quotas = [Quotas(s, section, clock=clock) for s in stores]
        users = [Actor("telegram", str(i)) for i in range(4)]
        jobs = [quotas[i % 2].reserve(users[i % 4], GROUP, p(1)) for i in range(200)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        granted = [r for r in results if not isinstance(r, BaseException)]
        assert len(granted) == 7  # the group pool is the tightest window
        assert all(isinstance(r, QuotaExceeded) for r in results if isinstance(r, BaseException))
        assert (await quotas[0].usage(users[0], GROUP)).window(  # type: ignore[union-attr]
            "chat_daily").used == 7
    finally:
        for s in stores:
            await s.close()


CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from bot.config import QuotaSection
    from bot.domain import Actor
    from bot.quotas import Price, Quotas
    from bot.storage.postgres import PostgresStore
    from bot.storage.sqlite import SqliteStore

    async def main() -> None:
        if sys.argv[1] == "sqlite":
            store = SqliteStore(Path(sys.argv[2]))
        else:
            store = PostgresStore(sys.argv[2], schema=sys.argv[3])
        await store.open()
        quotas = Quotas(store, QuotaSection(user_daily_credits=10))
        res = await quotas.reserve(Actor("telegram", "7"), None, Price(4, 0.04),
                                   model="nano-banana", size="1K")
        print(res.id, flush=True)
        await asyncio.sleep(120)  # the provider call that never returns

    asyncio.run(main())
""")


async def test_reservation_of_a_killed_process_is_refunded_on_next_start(
        store_factory: StoreFactory) -> None:
    store = store_factory()
    where = ([str(store.path)] if isinstance(store, SqliteStore)
             else [store._url, store._schema or ""])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, "sqlite" if isinstance(store, SqliteStore) else "postgres",
        *where, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        reservation_id = line.decode().strip()
        assert reservation_id, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    finally:
        proc.kill()  # SIGKILL: no cleanup, no refund
        await proc.wait()
    assert proc.returncode == -9

    victim = Actor("telegram", "7")
    await store.open()
    try:
        quotas = Quotas(store, QuotaSection(user_daily_credits=10))
        held = await store.held_reservations()
        assert [r.id for r in held] == [reservation_id]
        before = await quotas.usage(victim)
        assert before.reserved == 4 and before.credits_left == 6
        assert await quotas.refund_stale() == 1
        after = await quotas.usage(victim)
        assert after.reserved == 0 and after.credits_left == 10
        assert await store.held_reservations() == []
        assert await quotas.refund_stale() == 0  # idempotent
        rows = await store.ledger(victim.key)
        assert [(r.kind, r.credits) for r in rows] == [("reserve", 4), ("refund", -4)]
        assert rows[-1].note == "stale at start-up"
        assert await store.integrity_ok()
    finally:
        await store.close()


# ----- the books always balance: a stateful property test -------------------------------------


@dataclass
class ModelReservation:
    actor: str
    chat: str | None
    credits: int
    bonus: int
    usd: float
    day: str
    month: str
    state: str = "held"


USERS = [Actor("telegram", "1"), Actor("telegram", "2"), Actor("discord", "3")]
ADMINS = [Actor("telegram", "0")]
CHATS = [None, ChatRef("telegram", "-1", "group"), ChatRef("discord", "g", "group"),
         ChatRef("telegram", "1", "private")]
CONFIGS = [
    QuotaSection(user_daily_credits=10, user_monthly_credits=25, chat_daily_credits=12,
                 global_daily_usd=0.5, timezone="Asia/Shanghai"),
    QuotaSection(user_daily_credits=0, user_monthly_credits=0, chat_daily_credits=0,
                 global_daily_usd=0.0, timezone="America/New_York"),
    QuotaSection(user_daily_credits=6, user_monthly_credits=100, chat_daily_credits=8,
                 global_daily_usd=0.3, timezone="UTC"),
    # A small allowance and a group pool: most group jobs are paid (partly) with bonus credits.
    QuotaSection(user_daily_credits=2, user_monthly_credits=50, chat_daily_credits=10,
                 global_daily_usd=0.0, timezone="Asia/Shanghai"),
]
LIVE = ("held", "settled")


class LedgerMachine(RuleBasedStateMachine):
    """Random reserve / settle / refund / grant / clock / restart against a model of the books."""

    #: A PostgreSQL database to run on (a fresh schema per example); None: a SQLite file.
    database: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="ledger-"))
        self.schema: str | None = None
        self.store: AnyStore
        if self.database is None:
            self.store = SqliteStore(self.tmp / "imagine.sqlite3")
        else:
            self.schema = self.run(engines.new_schema(self.database))
            self.store = PostgresStore(self.database, schema=self.schema, pool_size=2)
        self.run(self.store.open())
        self.clock = FakeClock(datetime(2024, 3, 9, 20, 0, tzinfo=UTC))
        self.cfg = CONFIGS[0]
        self.quotas = self.make()
        self.res: dict[str, ModelReservation] = {}
        self.granted: dict[str, int] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def make(self) -> Quotas:
        return Quotas(self.store, self.cfg, admins=frozenset(a.key for a in ADMINS),
                      clock=self.clock)

    def teardown(self) -> None:
        self.run(self.store.close())
        if self.database is not None and self.schema is not None:
            self.run(engines.drop_schema(self.database, self.schema))
        self.loop.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the model ---------------------------------------------------------------------------

    def live(self) -> list[ModelReservation]:
        return [r for r in self.res.values() if r.state in LIVE]

    def bonus(self, actor: str) -> int:
        return self.granted.get(actor, 0) - sum(r.bonus for r in self.live() if r.actor == actor)

    def expected(self, actor: Actor, chat: ChatRef | None, price: Price) -> tuple[int, int] | None:
        """The (allowance, bonus) split the rules allow, or None when a window refuses."""
        day, month = self.quotas.today(), self.quotas.today()[:7]
        cfg, live = self.cfg, self.live()
        take_free, take_bonus = price.credits, 0
        if actor not in ADMINS:
            day_used = sum(r.credits for r in live if r.actor == actor.key and r.day == day)
            month_used = sum(r.credits for r in live if r.actor == actor.key and r.month == month)
            free = max(0, min(cfg.user_daily_credits - day_used,
                              cfg.user_monthly_credits - month_used))
            take_free = min(price.credits, free)
            take_bonus = price.credits - take_free
            if take_bonus > self.bonus(actor.key):
                return None
            if chat is not None and chat.kind != "private" and cfg.chat_daily_credits > 0:
                pool = sum(r.credits + r.bonus for r in live if r.chat == chat.key and r.day == day)
                if pool + price.credits > cfg.chat_daily_credits:
                    return None
        if cfg.global_daily_usd > 0:
            spent = sum(r.usd for r in live if r.day == day)
            if spent + price.usd > cfg.global_daily_usd + 1e-9:
                return None
        return take_free, take_bonus

    # -- rules -------------------------------------------------------------------------------

    @initialize(cfg=st.sampled_from([*CONFIGS, CONFIGS[-1]]))
    def configure(self, cfg: QuotaSection) -> None:
        self.cfg = cfg
        self.quotas = self.make()

    @rule(actor=st.sampled_from(USERS + ADMINS), chat=st.sampled_from([*CHATS, CHATS[1]]),
          credits=st.integers(1, 9), cents=st.integers(0, 20))
    def reserve(self, actor: Actor, chat: ChatRef | None, credits: int, cents: int) -> None:
        price = Price(credits, cents / 100)
        want = self.expected(actor, chat, price)
        try:
            got = self.run(self.quotas.reserve(actor, chat, price))
        except QuotaExceeded as exc:
            assert want is None, f"refused {price} for {actor.key}: {exc.params}"
            assert exc.params["resets_at"] is not None and exc.params["left"] >= 0
            return
        assert want == (got.credits, got.bonus), f"{actor.key} {price}: {want} vs {got}"
        self.res[got.id] = ModelReservation(actor.key, chat.key if chat else None, got.credits,
                                            got.bonus, got.usd, got.day, got.month)

    @precondition(lambda self: any(r.state == "held" for r in self.res.values()))
    @rule(pick=st.integers(0, 10_000), settle=st.booleans())
    def close(self, pick: int, settle: bool) -> None:
        held = [k for k, r in self.res.items() if r.state == "held"]
        key = held[pick % len(held)]
        ok = self.run(self.quotas.settle(key) if settle else self.quotas.refund(key))
        assert ok is True
        self.res[key].state = "settled" if settle else "refunded"

    @precondition(lambda self: any(r.state != "held" for r in self.res.values()))
    @rule(pick=st.integers(0, 10_000), settle=st.booleans())
    def close_again(self, pick: int, settle: bool) -> None:
        closed = [k for k, r in self.res.items() if r.state != "held"]
        key = closed[pick % len(closed)]
        ok = self.run(self.quotas.settle(key) if settle else self.quotas.refund(key))
        assert ok is False  # a reservation closes exactly once

    @rule(actor=st.sampled_from(USERS + ADMINS), amount=st.integers(-10, 30))
    def grant(self, actor: Actor, amount: int) -> None:
        if amount == 0:  # a grant of nothing is refused, and moves nothing
            with pytest.raises(BadGrant):
                self.run(self.quotas.grant(actor.key, amount))
            return
        self.run(self.quotas.grant(actor.key, amount))
        applied = max(amount, -self.bonus(actor.key))
        self.granted[actor.key] = self.granted.get(actor.key, 0) + applied

    @rule(minutes=st.sampled_from([1, 59, 60 * 5, 60 * 13, 60 * 24, 60 * 24 * 12]))
    def advance(self, minutes: int) -> None:
        self.clock.advance(minutes=minutes)

    @rule()
    def restart(self) -> None:
        """A crash and a new start: every held reservation is refunded."""
        self.quotas = self.make()
        held = [r for r in self.res.values() if r.state == "held"]
        assert self.run(self.quotas.refund_stale()) == len(held)
        for r in held:
            r.state = "refunded"

    # -- invariants --------------------------------------------------------------------------

    async def _books(self) -> dict[str, list[Any]]:
        queries = {
            "per_day": "SELECT actor_key, day, SUM(credits) FROM ledger GROUP BY actor_key, day",
            "per_month": "SELECT actor_key, month, SUM(credits) FROM ledger"
                         " GROUP BY actor_key, month",
            "chat_day": "SELECT chat_key, day, SUM(credits) - SUM(CASE WHEN kind = 'grant'"
                        " THEN 0 ELSE bonus END) FROM ledger WHERE chat_key IS NOT NULL"
                        " GROUP BY chat_key, day",
            "usd_day": "SELECT day, SUM(usd) FROM ledger GROUP BY day",
            "bonus": "SELECT actor_key, SUM(bonus) FROM ledger GROUP BY actor_key",
            "reservations": "SELECT id, actor_key, chat_key, credits, bonus, usd, day, month,"
                            " state FROM reservations",
            "rows": "SELECT reservation_id, kind FROM ledger WHERE reservation_id IS NOT NULL",
            "counters": "SELECT scope, key, period, units, usd FROM counters",
        }
        return {name: await fetch(self.store, sql) for name, sql in queries.items()}

    @invariant()
    def books_balance(self) -> None:
        books = self.run(self._books())
        cfg = self.cfg
        exempt = {a.key for a in ADMINS}
        reservations = {r[0]: r for r in books["reservations"]}
        live = [r for r in reservations.values() if r[8] in LIVE]

        # The database agrees with the model about every reservation.
        assert {k: r[8] for k, r in reservations.items()} == {
            k: r.state for k, r in self.res.items()}
        for key, r in self.res.items():
            row = reservations[key]
            assert (row[1], row[2], row[3], row[4], row[6]) == (r.actor, r.chat, r.credits,
                                                                r.bonus, r.day)

        # No window below zero; non-exempt users never over their allowance.
        for actor, day, total in books["per_day"]:
            assert total >= 0
            assert total == sum(r[3] for r in live if r[1] == actor and r[6] == day)
            if actor not in exempt:
                assert total <= cfg.user_daily_credits
        for actor, month, total in books["per_month"]:
            assert total >= 0
            assert total == sum(r[3] for r in live if r[1] == actor and r[7] == month)
            if actor not in exempt:
                assert total <= cfg.user_monthly_credits
        for chat, day, total in books["chat_day"]:
            assert total >= 0
            assert total == sum(r[3] + r[4] for r in live if r[2] == chat and r[6] == day)
            group = next(c for c in CHATS if c is not None and c.key == chat)
            admins_here = any(r[1] in exempt for r in live if r[2] == chat and r[6] == day)
            if group.kind != "private" and cfg.chat_daily_credits > 0 and not admins_here:
                assert total <= cfg.chat_daily_credits  # (admins are exempt from the pool)
        for day, total in books["usd_day"]:
            assert total >= -1e-9
            assert total == pytest.approx(sum(r[5] for r in live if r[6] == day), abs=1e-9)
            if cfg.global_daily_usd > 0:
                assert total <= cfg.global_daily_usd + 1e-6
        for actor, total in books["bonus"]:
            assert total >= 0
            assert total == self.granted.get(actor, 0) - sum(r[4] for r in live if r[1] == actor)
            assert total == self.bonus(actor)

        # The counters the windows read agree with the ledger they are kept from.
        counted = {(scope, key, period): (units, usd)
                   for scope, key, period, units, usd in books["counters"]}
        derived = {**{("user_day", a, d): (t, 0.0) for a, d, t in books["per_day"]},
                   **{("user_month", a, m): (t, 0.0) for a, m, t in books["per_month"]},
                   **{("bonus", a, ""): (t, 0.0) for a, t in books["bonus"]},
                   **{("chat_day", c, d): (t, 0.0) for c, d, t in books["chat_day"]},
                   **{("usd_day", "", d): (0, t) for d, t in books["usd_day"]}}
        for key in counted.keys() | derived.keys():
            units, usd = counted.get(key, (0, 0.0))
            want_units, want_usd = derived.get(key, (0, 0.0))
            assert units == want_units and usd == pytest.approx(want_usd, abs=1e-9), key

        # One reserve row per reservation, and one closing row exactly when it is closed.
        kinds: dict[str, list[str]] = {}
        for reservation_id, kind in books["rows"]:
            kinds.setdefault(reservation_id, []).append(kind)
        for key, r in self.res.items():
            closing = {"held": [], "settled": ["settle"], "refunded": ["refund"]}[r.state]
            assert kinds.get(key) == ["reserve", *closing]


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


class PgLedgerMachine(LedgerMachine):
    """The same machine on PostgreSQL (the database is set by the test below)."""


def test_ledger_machine_on_postgres(pg_database: str) -> None:
    PgLedgerMachine.database = pg_database
    run_state_machine_as_test(PgLedgerMachine, settings=settings(
        max_examples=25, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
