"""Parked results in the store, on both engines: kept out of the sweep, claimed once, forgotten.

Two store objects on one database stand for two processes (as in test_store_concurrency.py).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bot.config import QuotaSection
from bot.domain import Actor, Turn
from bot.quotas import Price, Quotas
from bot.storage.base import Parked, Reservation
from tests.store_engines import AnyStore
from tests.test_store_concurrency import expire

USER = Actor("telegram", "5")
SECTION = QuotaSection(user_daily_credits=100, global_daily_usd=0)


async def held_for(store: AnyStore, owner: str, turn_id: str) -> Reservation:
    """A reservation held by ``owner`` that pays for a stored turn ``turn_id``."""
    held = await Quotas(store, SECTION, owner=owner).reserve(USER, None, Price(4, 0.04))
    await store.add_result([], datetime.now(UTC), Turn(
        id=turn_id, actor_key=USER.key, chat_key="telegram:5", prompt="p", model="m", size="1K",
        aspect="1:1", parent_id=None, input_hashes=(), output_hashes=(), provider_state=None,
        created_at=datetime.now(UTC), kind="imagine", credits=4), held.id)
    return held


def parked(*turns: str, platform: str = "telegram") -> Parked:
    """A parked result of ``turns`` (the first names the delivery)."""
    return Parked(turns[0], turns, platform, '{"chat_id": 5}', '{"text": "hi"}',
                  datetime.now(UTC))


async def test_a_parked_result_outlives_its_process_and_is_claimed_once(
        two: tuple[AnyStore, AnyStore]) -> None:
    a, b = two
    await a.register_instance("dead", 60)
    batch = [await held_for(a, "dead", f"t{n}") for n in range(2)]
    single = await held_for(a, "dead", "solo")
    await a.park(parked("t0", "t1"))
    await a.park(parked("solo", platform="discord"))
    assert await b.claim_parked("telegram", "b") == []  # its owner still runs
    await expire(a, "dead")
    # The sweep leaves parked results alone; the outbox decides what becomes of them.
    assert await b.orphaned_reservations() == []
    assert await Quotas(b, SECTION, owner="b").refund_stale() == 0
    await b.register_instance("b", 60)
    await b.register_instance("c", 60)
    claims = await asyncio.gather(b.claim_parked("telegram", "b"), a.claim_parked("telegram", "c"))
    won = [c for c in claims if c]
    assert len(won) == 1 and [(p.delivery, p.turn_ids) for p in won[0]] == [("t0", ("t0", "t1"))]
    owner = "b" if claims[0] else "c"
    assert {r.owner for r in await b.held_reservations() if r.id != single.id} == {owner}
    assert {r.id for r in await b.held_reservations()} == {*(r.id for r in batch), single.id}
    assert won[0][0].target == '{"chat_id": 5}' and won[0][0].reply == '{"text": "hi"}'
    # Claimed by a live process: nobody else claims it, the sweep still leaves it alone.
    assert await a.claim_parked("telegram", "d") == []
    assert await b.orphaned_reservations() == []
    first = won[0][0].created_at
    await b.park(parked("t0", "t1"))  # parked again after the claim: still waiting since then
    await b.retire_instance(owner)
    await b.register_instance("e", 60)
    again = await b.claim_parked("telegram", "e")
    assert [p.created_at for p in again] == [first]
    await b.unpark("t0")
    assert await b.claim_parked("telegram", "e") == []


async def test_a_row_whose_reservation_was_closed_is_forgotten(
        two: tuple[AnyStore, AnyStore]) -> None:
    a, b = two
    held = await held_for(a, "gone", "t9")
    await a.park(parked("t9"))
    await Quotas(a, SECTION, owner="gone").settle(held.id)  # sent, then the crash
    assert await b.claim_parked("telegram", "b") == []
    await b.park(parked("t9"))
    assert await b.claim_parked("telegram", "b") == []  # forgotten again, never claimed
