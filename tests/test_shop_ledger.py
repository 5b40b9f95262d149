"""A stateful property test of purchased credits on both engines: for any sequence of purchases,
refunds of purchases (the platform's first or the payment's first), grants, reservations, settles
and refunds of reservations, no balance goes below zero, a refund takes back only what is left,
and the counters and the model agree with the ledger's sums."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bot.config import QuotaSection
from bot.domain import Actor
from bot.errors import QuotaExceeded
from bot.quotas import Price, Quotas
from bot.shop import Charge, Shop
from bot.shop_config import ShopSection
from bot.storage.base import Payment
from bot.storage.postgres import PostgresStore
from bot.storage.sqlite import SqliteStore
from tests import store_engines as engines
from tests.helpers import FakeClock
from tests.store_engines import AnyStore, fetch

USERS = [Actor("telegram", "1"), Actor("discord", "2")]
OPERATOR = Actor("cli", "operator", is_admin=True)
DAILY = 3


@dataclass
class Job:
    actor: str
    day: int
    credits: int
    bonus: int
    paid: int
    clawback: int = 0
    state: str = "held"


@dataclass
class Sale:
    actor: str
    credits: int
    state: str = "credited"
    removed: int = 0
    credited: bool = True


async def _refunds_quietly(payment: Payment) -> None:
    """The platform gives the money back (what it says is not the ledger's business)."""


class PurchaseMachine(RuleBasedStateMachine):
    """Purchases, refunds, grants and jobs against a model of every balance."""

    database: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="purchases-"))
        self.schema: str | None = None
        self.store: AnyStore
        if self.database is None:
            self.store = SqliteStore(self.tmp / "imagine.sqlite3")
        else:
            self.schema = self.run(engines.new_schema(self.database))
            self.store = PostgresStore(self.database, schema=self.schema, pool_size=2)
        self.run(self.store.open())
        self.clock = FakeClock(datetime(2024, 3, 9, 20, 0, tzinfo=UTC))
        self.quotas = Quotas(self.store, QuotaSection(user_daily_credits=DAILY,
                                                      user_monthly_credits=10_000,
                                                      global_daily_usd=0), clock=self.clock)
        self.shop = Shop(ShopSection(), self.store, self.quotas)
        self.shop.register_refunder("telegram", _refunds_quietly)
        self.ids = itertools.count(1)
        self.jobs: dict[str, Job] = {}
        self.sales: dict[str, Sale] = {}
        self.bonus = {u.key: 0 for u in USERS}
        self.paid = {u.key: 0 for u in USERS}
        self.used_today = {u.key: 0 for u in USERS}
        self.day = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.store.close())
        if self.database is not None and self.schema is not None:
            self.run(engines.drop_schema(self.database, self.schema))
        self.loop.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def held(self, actor: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.actor == actor and j.state == "held"]

    # -- rules -------------------------------------------------------------------------------

    @rule(user=st.sampled_from(USERS), credits=st.integers(1, 12))
    def purchase(self, user: Actor, credits: int) -> None:
        charge_id = f"c{next(self.ids)}"
        receipt = self.run(self.shop.receive(Charge("telegram", charge_id, user, "p", credits,
                                                    credits)))
        assert receipt.fresh
        self.sales[charge_id] = Sale(user.key, credits)
        self.paid[user.key] += credits
        assert receipt.balance == self.paid[user.key]

    @precondition(lambda self: any(s.state == "credited" for s in self.sales.values()))
    @rule(pick=st.integers(0, 1000))
    def refund_purchase(self, pick: int) -> None:
        live = [k for k, s in self.sales.items() if s.state == "credited"]
        key = live[pick % len(live)]
        sale = self.sales[key]
        done = self.run(self.shop.refund(OPERATOR, "telegram", key))
        removed = min(sale.credits, self.paid[sale.actor])
        assert (done.state, done.removed) == ("refunded", removed)
        self.paid[sale.actor] -= removed
        sale.state, sale.removed = "refunded", removed
        # What jobs in flight hold of it is marked, oldest job first.
        mark = sale.credits - removed
        for job in self.held(sale.actor):
            take = min(mark, job.paid - job.clawback)
            job.clawback += take
            mark -= take

    @rule(user=st.sampled_from(USERS), credits=st.integers(1, 12))
    def refund_arrives_first(self, user: Actor, credits: int) -> None:
        """The platform's refund update overtakes its payment: nothing is ever credited."""
        charge = Charge("telegram", f"c{next(self.ids)}", user, "p", credits, credits)
        self.run(self.shop.refunded(charge))
        assert not self.run(self.shop.receive(charge)).fresh
        self.sales[charge.charge_id] = Sale(user.key, credits, "refunded", credited=False)

    @rule(user=st.sampled_from(USERS), amount=st.integers(-5, 8).filter(bool))
    def grant(self, user: Actor, amount: int) -> None:
        self.run(self.quotas.grant(user.key, amount))
        self.bonus[user.key] += max(amount, -self.bonus[user.key])

    @rule(user=st.sampled_from(USERS), cost=st.integers(1, 15))
    def reserve(self, user: Actor, cost: int) -> None:
        free = max(0, DAILY - self.used_today[user.key])
        take_free = min(cost, free)
        take_bonus = min(cost - take_free, self.bonus[user.key])
        take_paid = cost - take_free - take_bonus
        try:
            res = self.run(self.quotas.reserve(user, None, Price(cost, 0.0)))
        except QuotaExceeded:
            assert take_paid > self.paid[user.key]
            return
        finally:
            self.clock.advance(seconds=1)  # jobs are marked oldest first: keep them apart
        assert (res.credits, res.bonus, res.paid) == (take_free, take_bonus, take_paid)
        self.jobs[res.id] = Job(user.key, self.day, take_free, take_bonus, take_paid)
        self.used_today[user.key] += take_free
        self.bonus[user.key] -= take_bonus
        self.paid[user.key] -= take_paid

    @precondition(lambda self: any(j.state == "held" for j in self.jobs.values()))
    @rule(pick=st.integers(0, 1000), settle=st.booleans())
    def close(self, pick: int, settle: bool) -> None:
        held = [k for k, j in self.jobs.items() if j.state == "held"]
        key = held[pick % len(held)]
        job = self.jobs[key]
        assert self.run(self.quotas.settle(key) if settle else self.quotas.refund(key))
        job.state = "settled" if settle else "refunded"
        if not settle:
            if job.day == self.day:  # a refund goes back to the day the job was charged in
                self.used_today[job.actor] -= job.credits
            self.bonus[job.actor] += job.bonus
            self.paid[job.actor] += job.paid - min(job.clawback, job.paid)

    @rule()
    def next_day(self) -> None:
        self.clock.advance(days=1)
        self.day += 1
        self.used_today = {k: 0 for k in self.used_today}

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        sums = dict(self.run(fetch(self.store, "SELECT actor_key, SUM(paid) FROM ledger"
                                                " GROUP BY actor_key")))
        bonus = dict(self.run(fetch(self.store, "SELECT actor_key, SUM(bonus) FROM ledger"
                                                 " GROUP BY actor_key")))
        counters = {(s, k): u for s, k, u in self.run(fetch(
            self.store, "SELECT scope, key, units FROM counters WHERE scope IN ('paid', 'bonus')"))}
        for user in USERS:
            key = user.key
            assert sums.get(key, 0) == counters.get(("paid", key), 0) == self.paid[key] >= 0
            assert bonus.get(key, 0) == counters.get(("bonus", key), 0) == self.bonus[key] >= 0
            # Conservation: every purchased credit is left, held, spent or taken back.
            bought = sum(s.credits for s in self.sales.values() if s.actor == key and s.credited)
            mine = [j for j in self.jobs.values() if j.actor == key]
            spent = sum(j.paid for j in mine if j.state == "settled")
            held = sum(j.paid for j in mine if j.state == "held")
            taken = sum(s.removed for s in self.sales.values() if s.actor == key)
            clawed = sum(min(j.clawback, j.paid) for j in mine if j.state == "refunded")
            assert bought == self.paid[key] + held + spent + taken + clawed
            assert all(s.removed <= s.credits for s in self.sales.values())
        states = dict(self.run(fetch(self.store, "SELECT charge_id, state FROM payments")))
        assert states == {k: s.state for k, s in self.sales.items()}
        jobs = {r[0]: r[1:] for r in self.run(fetch(
            self.store, "SELECT id, paid, clawback, state FROM reservations"))}
        assert jobs == {k: (j.paid, j.clawback, j.state) for k, j in self.jobs.items()}


TestPurchaseMachine = PurchaseMachine.TestCase
TestPurchaseMachine.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


class PgPurchaseMachine(PurchaseMachine):
    """The same machine on PostgreSQL (the database is set by the test below)."""


def test_purchase_machine_on_postgres(pg_database: str) -> None:
    PgPurchaseMachine.database = pg_database
    run_state_machine_as_test(PgPurchaseMachine, settings=settings(
        max_examples=15, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
