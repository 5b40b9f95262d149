"""The shop's core on both engines: packs, invoices, payments recorded then credited once,
spending order, refunds that take back only what is left, clawback from jobs in flight, expiry,
revenue by day, a store that fails while crediting, and the 0006 -> 0007 migration."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.config import QuotaSection, Settings
from bot.domain import Actor
from bot.errors import NotAllowed, NotFound, QuotaExceeded
from bot.quotas import Price, Quotas
from bot.shop import Charge, NotRefundable, RefundFailed, Shop, ShopClosed, UnknownPack
from bot.shop_config import ShopSection
from bot.storage.base import Payment
from bot.storage.sqlite import SqliteStore
from bot.storage.sqlite_schema import _statements, migrations
from tests.helpers import FakeClock
from tests.store_engines import AnyStore, fetch, read_only

ALICE = Actor("telegram", "1", "alice")
BOB = Actor("discord", "2", "bob")
OPERATOR = Actor("cli", "operator", is_admin=True)
PACKS = {"usd_per_star": 0.02, "packs": [
    {"id": "small", "credits": 50, "stars": 25, "discord_sku": "111", "discord_usd": 0.99},
    {"id": "big", "credits": 200, "stars": 80},
    {"id": "discord-only", "credits": 10, "discord_sku": "222", "discord_usd": 0.49}]}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2024, 5, 10, 4, 0, tzinfo=UTC))


def build(store: AnyStore, clock: FakeClock, *, daily: int = 2, expire: int = 0,
          **shop: Any) -> tuple[Quotas, Shop]:
    quotas = Quotas(store, QuotaSection(user_daily_credits=daily, user_monthly_credits=100,
                                        global_daily_usd=0),
                    clock=clock, paid_expire_days=expire)
    section = ShopSection.model_validate({**PACKS, **shop})
    return quotas, Shop(section, store, quotas)


def tg(charge_id: str, actor: Actor = ALICE, credits: int = 50, stars: int = 25) -> Charge:
    return Charge("telegram", charge_id, actor, "small", credits, stars, stars * 0.02)


@asynccontextmanager
async def store_down(store: AnyStore) -> AsyncIterator[None]:
    """The database refuses writes until the block ends, then takes them again."""
    async with read_only(store):
        yield
    if isinstance(store, SqliteStore):  # read_only swapped in a read-only connection: reopen
        await store.db.close()
        store._db = None
        await store.open()


async def paid(store: AnyStore, actor: Actor) -> int:
    async with store.quota_tx() as tx:
        return await tx.paid(actor.key)


# ----- the catalog and invoices --------------------------------------------------------------


def test_packs_per_platform(store: AnyStore, clock: FakeClock) -> None:
    _, shop = build(store, clock)
    assert [p.id for p in shop.packs("telegram")] == ["small", "big"]
    assert [p.id for p in shop.packs("discord")] == ["small", "discord-only"]
    assert shop.by_sku("222") is not None and shop.by_sku("999") is None
    with pytest.raises(UnknownPack):
        shop.pack("big", "discord")
    _, closed = build(store, clock, packs=[])
    with pytest.raises(ShopClosed):
        closed.pack("small", "telegram")


def test_config_refuses_doubled_ids_and_bad_skus() -> None:
    with pytest.raises(ValueError, match="unique"):
        Settings.model_validate({"shop": {"packs": [{"id": "a", "credits": 1},
                                                    {"id": "a", "credits": 2}]}})
    with pytest.raises(ValueError, match="SKU"):
        Settings.model_validate({"shop": {"packs": [{"id": "a", "credits": 1,
                                                     "discord_sku": "abc"}]}})
    assert not Settings().shop.enabled


async def test_pre_checkout_answers(store: AnyStore, clock: FakeClock) -> None:
    _, shop = build(store, clock)
    small = shop.pack("small", "telegram")
    payload = shop.payload(ALICE, small)
    assert len(payload.encode()) <= 128
    assert await shop.check_invoice(ALICE, payload, "XTR", 25) is None
    assert await shop.check_invoice(ALICE, payload, "USD", 25) == "shop.invoice_invalid"
    assert await shop.check_invoice(ALICE, "someone else's", "XTR", 25) == "shop.invoice_invalid"
    assert await shop.check_invoice(ALICE, payload, "XTR", 24) == "shop.pack_gone"
    assert await shop.check_invoice(Actor("telegram", "7"), payload, "XTR", 25) == "shop.not_yours"
    await store.set_user_flags(ALICE.key, banned=True)
    assert await shop.check_invoice(ALICE, payload, "XTR", 25) == "error.banned"
    # Removed (or repriced) after the invoice went out: the payment is refused before it is made.
    _, later = build(store, clock, packs=[{"id": "small", "credits": 60, "stars": 25}])
    assert await later.check_invoice(ALICE, payload, "XTR", 25) == "shop.pack_gone"


# ----- payments: recorded first, credited once -----------------------------------------------


async def test_a_payment_credits_once(store: AnyStore, clock: FakeClock) -> None:
    _, shop = build(store, clock)
    first = await shop.receive(tg("c1"))
    again = await shop.receive(tg("c1"))
    assert first.fresh and not again.fresh
    assert first.payment.state == again.payment.state == "credited"
    assert first.balance == again.balance == 50 == await paid(store, ALICE)
    kinds = [e.kind for e in await store.ledger(ALICE.key)]
    assert kinds == ["purchase"]


async def test_purchased_credits_are_spent_after_allowance_and_bonus(store: AnyStore,
                                                                     clock: FakeClock) -> None:
    quotas, shop = build(store, clock, daily=2)
    await quotas.grant(ALICE.key, 3)
    await shop.receive(tg("c1"))
    res = await quotas.reserve(ALICE, None, Price(10, 0.1))
    assert (res.credits, res.bonus, res.paid) == (2, 3, 5)
    usage = await quotas.usage(ALICE)
    assert (usage.bonus, usage.paid, usage.reserved, usage.credits_left) == (0, 45, 10, 45)
    await quotas.refund(res.id)
    assert (await quotas.usage(ALICE)).paid == 50
    res = await quotas.reserve(ALICE, None, Price(10, 0.1))
    await quotas.settle(res.id)
    assert await paid(store, ALICE) == 45
    with pytest.raises(QuotaExceeded) as exc:
        await quotas.reserve(ALICE, None, Price(46, 0.1))
    assert exc.value.params["left"] == 45


async def test_a_refund_takes_back_only_what_is_left(store: AnyStore, clock: FakeClock) -> None:
    quotas, shop = build(store, clock, daily=0)
    await shop.receive(tg("c1"))
    res = await quotas.reserve(ALICE, None, Price(30, 0.3))
    await quotas.settle(res.id)
    shop.register_refunder("telegram", _no_op)
    done = await shop.refund(OPERATOR, "telegram", "c1")
    assert (done.state, done.removed, done.refund_day) == ("refunded", 20, "2024-05-10")
    assert await paid(store, ALICE) == 0  # the 30 spent stay spent; nothing goes negative
    assert (await shop.refund(OPERATOR, "telegram", "c1")).removed == 20  # idempotent
    assert [e.kind for e in await store.ledger(ALICE.key)] == [
        "purchase", "reserve", "settle", "purchase_refund"]


async def test_a_refund_leaves_other_packs_alone(store: AnyStore, clock: FakeClock) -> None:
    quotas, shop = build(store, clock, daily=0)
    await shop.receive(tg("c1"))
    await shop.receive(tg("c2"))
    res = await quotas.reserve(ALICE, None, Price(30, 0.3))
    await quotas.settle(res.id)
    shop.register_refunder("telegram", _no_op)
    assert (await shop.refund(OPERATOR, "telegram", "c1")).removed == 50
    # Paid for one pack, used 30 of it: 20 are left, as if only that pack had been bought.
    assert await paid(store, ALICE) == 20


async def test_credits_held_by_a_job_go_with_the_pack_if_the_job_is_refunded(
        store: AnyStore, clock: FakeClock) -> None:
    quotas, shop = build(store, clock, daily=0)
    await shop.receive(tg("c1"))
    failing = await quotas.reserve(ALICE, None, Price(30, 0.3))
    working = await quotas.reserve(ALICE, None, Price(15, 0.1))
    shop.register_refunder("telegram", _no_op)
    done = await shop.refund(OPERATOR, "telegram", "c1")
    assert done.removed == 5 and await paid(store, ALICE) == 0
    await quotas.refund(failing.id, "UpstreamError")  # its 30 would come back: they go instead
    await quotas.settle(working.id)  # spent: nothing to take back
    assert await paid(store, ALICE) == 0
    rows = await fetch(store, "SELECT units FROM counters WHERE scope = 'paid' AND key = ?",
                       ALICE.key)
    assert rows == [(0,)]


async def test_a_refund_before_the_payment_never_credits(store: AnyStore,
                                                          clock: FakeClock) -> None:
    _, shop = build(store, clock)
    early = await shop.refunded(tg("c1"))
    assert early is not None and early.state == "refunded"
    late = await shop.receive(tg("c1"))
    assert not late.fresh and late.payment.state == "refunded" and late.balance == 0
    assert await store.ledger(ALICE.key) == []


async def test_a_banned_payer_is_refunded_where_the_platform_allows(
        store: AnyStore, clock: FakeClock) -> None:
    _, shop = build(store, clock)
    refunded: list[str] = []

    async def refunder(payment: Payment) -> None:
        refunded.append(payment.charge_id)

    shop.register_refunder("telegram", refunder)
    await store.set_user_flags(ALICE.key, banned=True)
    receipt = await shop.receive(tg("c1"))
    assert refunded == ["c1"] and receipt.payment.state == "refunded" and not receipt.fresh
    assert await store.ledger(ALICE.key) == []
    # Discord cannot refund from the bot: the banned user's credits wait for an unban.
    await store.set_user_flags(BOB.key, banned=True)
    charge = shop.discord_charge(BOB, "e1", "111")
    assert charge is not None
    assert (await shop.receive(charge)).payment.state == "credited"


async def test_refund_needs_an_operator_a_known_payment_and_a_refunder(
        store: AnyStore, clock: FakeClock) -> None:
    _, shop = build(store, clock)
    await shop.receive(tg("c1"))
    with pytest.raises(NotAllowed):
        await shop.refund(ALICE, "telegram", "c1")
    with pytest.raises(NotFound):
        await shop.refund(OPERATOR, "telegram", "nope")
    with pytest.raises(NotRefundable):
        await shop.refund(OPERATOR, "telegram", "c1")

    async def refusing(payment: Payment) -> None:
        raise RefundFailed("CHARGE_NOT_FOUND")

    shop.register_refunder("telegram", refusing)
    with pytest.raises(RefundFailed):
        await shop.refund(OPERATOR, "telegram", "c1")
    assert (await store.get_payment("telegram", "c1")) is not None
    assert await paid(store, ALICE) == 50  # the platform said no: nothing was taken


async def test_purchased_credits_expire_when_configured(store: AnyStore,
                                                        clock: FakeClock) -> None:
    quotas, shop = build(store, clock, daily=0, expire=30)
    await shop.receive(tg("old"))
    res = await quotas.reserve(ALICE, None, Price(20, 0.2))
    await quotas.settle(res.id)
    clock.advance(days=20)
    await shop.receive(tg("new"))
    assert (await quotas.usage(ALICE)).paid == 80
    clock.advance(days=15)  # "old" is 35 days old: its 30 left lapse, the newer pack stays
    assert (await quotas.usage(ALICE)).paid == 50
    assert [e.kind for e in await store.ledger(ALICE.key)][-1] == "expire"
    _, never = build(store, clock, daily=0)
    clock.advance(days=400)
    assert (await never.receive(tg("x"))).balance == 50 + 50


# ----- faults ----------------------------------------------------------------------------------


async def test_the_store_failing_while_crediting_loses_nothing(store: AnyStore,
                                                               clock: FakeClock) -> None:
    _, shop = build(store, clock)
    shop.retry_delays = (0.2,) * 15
    async with store_down(store):
        task = asyncio.create_task(shop.receive(tg("c1")))
        await asyncio.sleep(0.5)
        assert not task.done()  # still trying
    receipt = await asyncio.wait_for(task, 10)
    assert receipt.fresh and receipt.balance == 50


async def test_a_recorded_payment_is_credited_at_the_next_start(store: AnyStore,
                                                                clock: FakeClock) -> None:
    quotas, shop = build(store, clock)
    await store.record_payment(Payment("telegram", "c1", ALICE.key, "small", 50, 25, 0.5,
                                       day="2024-05-10"))
    assert await shop.catch_up() == 1 and await shop.catch_up() == 0
    assert (await quotas.usage(ALICE)).paid == 50


async def test_concurrent_deliveries_of_one_payment_credit_once(store: AnyStore,
                                                                clock: FakeClock) -> None:
    _, shop = build(store, clock)
    receipts = await asyncio.gather(*(shop.receive(tg("c1")) for _ in range(8)))
    assert sum(r.fresh for r in receipts) == 1
    assert await paid(store, ALICE) == 50


# ----- revenue ---------------------------------------------------------------------------------


async def test_revenue_by_day_next_to_spend(store: AnyStore, clock: FakeClock) -> None:
    quotas, shop = build(store, clock, daily=0)
    await shop.receive(tg("c1"))
    charge = shop.discord_charge(BOB, "e1", "111")
    assert charge is not None
    await shop.receive(charge)
    res = await quotas.reserve(ALICE, None, Price(10, 0.25))
    await quotas.settle(res.id)
    clock.advance(days=1)
    shop.register_refunder("telegram", _no_op)
    await shop.refund(OPERATOR, "telegram", "c1")
    days = {d.day: d for d in await shop.revenue(7)}
    first, second = days["2024-05-10"], days["2024-05-11"]
    assert (first.sales, first.stars, first.credits) == (2, 25, 100)
    assert first.usd == pytest.approx(0.5 + 0.99) and first.spend_usd == pytest.approx(0.25)
    assert first.margin_usd == pytest.approx(0.5 + 0.99 - 0.25)
    assert (second.refunds, second.refunded_stars) == (1, 25)
    assert second.net_usd == pytest.approx(-0.5)
    assert len(days) == 7 and [d.day for d in await shop.revenue(None)] == [
        "2024-05-10", "2024-05-11"]


# ----- the migration -----------------------------------------------------------------------------


async def test_migration_keeps_the_ledger_its_counters_and_append_only(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    for version, sql in migrations():
        if version <= 6:
            for statement in _statements(sql):
                db.execute(statement)
    db.execute("PRAGMA user_version = 6")
    db.execute("INSERT INTO ledger (ts, kind, actor_key, day, month, bonus) VALUES"
               " ('2024-01-01T00:00:00+00:00', 'grant', 'telegram:1', '2024-01-01', '2024-01', 7)")
    db.commit()
    db.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.schema_version() == migrations()[-1][0]  # 0007 and every later one
        entries = await store.ledger("telegram:1")
        assert [(e.kind, e.bonus, e.paid) for e in entries] == [("grant", 7, 0)]
        async with store.quota_tx() as tx:
            assert await tx.bonus("telegram:1") == 7
            await tx.append(entries[0].__class__(kind="purchase", actor_key="telegram:1",
                                                 day="2024-01-02", month="2024-01", paid=5))
        async with store.quota_tx() as tx:
            assert await tx.paid("telegram:1") == 5
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            await store.db.execute("UPDATE ledger SET bonus = 0")
    finally:
        await store.close()


async def _no_op(payment: Payment) -> None:
    """A platform that refunds without a word."""
