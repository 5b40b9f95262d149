"""A result's rows written together (Store.add_result), on both engines: its blobs indexed, the
turn stored, the reservation that pays for it linked; and on SQLite, a burst of them alongside
quota transactions on the one connection loses nothing and charges right."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import QuotaSection
from bot.domain import Actor, Turn
from bot.errors import QuotaExceeded
from bot.quotas import Price, Quotas
from bot.storage.base import BlobInfo
from tests.store_engines import INTEGRITY_ERRORS, AnyStore

USER = Actor("telegram", "5")
POOR = Actor("telegram", "6")
SECTION = QuotaSection(user_daily_credits=10_000, global_daily_usd=0)
PNG = BlobInfo("a" * 64, "image/png", 100, 10, 10)
JPEG = BlobInfo("b" * 64, "image/jpeg", 50, 10, 10)


def turn(turn_id: str, *, parent: str | None = None, outputs: tuple[str, ...] = (PNG.hash,),
         inputs: tuple[str, ...] = ()) -> Turn:
    """A result turn of USER's."""
    return Turn(id=turn_id, actor_key=USER.key, chat_key="telegram:5", prompt="p", model="m",
                size="1K", aspect="1:1", parent_id=parent, input_hashes=inputs,
                output_hashes=outputs, provider_state="state", created_at=datetime.now(UTC),
                kind="imagine", credits=4)


async def test_a_result_is_indexed_stored_and_linked_to_its_reservation(store: AnyStore) -> None:
    quotas = Quotas(store, SECTION, owner="me")
    held = await quotas.reserve(USER, None, Price(4, 0.04))
    old = datetime.now(UTC) - timedelta(days=3)
    await store.put_blob(JPEG, used_at=old)  # a reference used before: touched, not duplicated
    now = datetime.now(UTC)
    await store.add_result([JPEG, PNG], now, turn("t1", parent="forgotten", inputs=(JPEG.hash,)),
                           held.id)
    stored = await store.get_turn("t1")
    assert stored is not None and stored.parent_id is None  # its parent is gone: a root
    assert stored.input_hashes == (JPEG.hash,) and stored.output_hashes == (PNG.hash,)
    assert await store.get_blob(PNG.hash) == PNG and await store.get_blob(JPEG.hash) == JPEG
    assert await store.prunable_blobs(now - timedelta(days=1)) == []  # both used just now
    linked = await store.reservation_of("t1")
    assert linked is not None and linked.id == held.id and linked.state == "held"
    await quotas.settle(held.id)
    assert [e.kind for e in await store.ledger(USER.key)] == ["reserve", "settle"]


async def test_no_reservation_no_link_and_a_refused_turn_links_nothing(store: AnyStore) -> None:
    quotas = Quotas(store, SECTION, owner="me")
    await store.add_result([PNG], datetime.now(UTC), turn("t1"), None)
    assert await store.get_turn("t1") is not None and await store.reservation_of("t1") is None
    held = await quotas.reserve(USER, None, Price(4, 0.04))
    with pytest.raises(INTEGRITY_ERRORS):  # the same id again: the insert is refused...
        await store.add_result([PNG], datetime.now(UTC), turn("t1"), held.id)
    assert await store.reservation_of("t1") is None  # ...and the reservation stays unlinked
    again = await quotas.reserve(USER, None, Price(4, 0.04))
    await store.add_result([], datetime.now(UTC), turn("t2", outputs=()), again.id)
    linked = await store.reservation_of("t2")
    assert linked is not None and linked.id == again.id


async def test_a_burst_of_results_beside_quota_transactions_keeps_every_row(
        store: AnyStore) -> None:
    """On SQLite the statements share one connection with the quota transactions: queued
    together, none may land inside another task's BEGIN ... COMMIT: a refused reservation
    rolls back, and would take it along."""
    quotas = Quotas(store, SECTION, owner="me")
    holds = [await quotas.reserve(USER, None, Price(4, 0.04)) for _ in range(40)]
    await store.set_user_flags(POOR.key, daily_limit=1)  # each reserve of theirs rolls back

    async def result(n: int) -> None:
        blob = BlobInfo(f"{n:064x}", "image/png", 100, 10, 10)
        await store.add_result([blob], datetime.now(UTC), turn(f"t{n}", outputs=(blob.hash,)),
                               holds[n].id)

    async def money(n: int) -> None:
        fresh = await quotas.reserve(USER, None, Price(1, 0.01))
        await (quotas.settle(fresh.id) if n % 2 else quotas.refund(fresh.id, "test"))

    async def refused() -> None:
        with pytest.raises(QuotaExceeded):
            await quotas.reserve(POOR, None, Price(4, 0.04))

    # Interleaved, so that results are written while transactions are open.
    await asyncio.gather(*(job for n in range(40) for job in (refused(), result(n), money(n))))
    for n in range(40):
        linked = await store.reservation_of(f"t{n}")
        assert linked is not None and linked.id == holds[n].id
        assert await store.get_blob(f"{n:064x}") is not None
    kinds = [e.kind for e in await store.ledger(USER.key)]
    assert kinds.count("reserve") == 80 and kinds.count("settle") == 20
    assert kinds.count("refund") == 20
    assert len(await store.held_reservations()) == 40
