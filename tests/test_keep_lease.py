"""A parsed answer's four-fold lease shrinks to its images before the result's store trips
(bot.delivery.Deliveries.keep), so that answers are read while results wait for the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.blobs import BlobStore, LocalBlobs
from bot.budget import ANSWER_WEIGHT, DeliveryBudget
from bot.config import QuotaSection
from bot.conversations import Conversations
from bot.delivery import Deliveries, Pending
from bot.domain import Actor, ChatRef, Turn
from bot.metrics import JobEvent, Metrics
from bot.providers.base import ProviderResult
from bot.quotas import Price, Quotas
from bot.storage.sqlite import SqliteStore
from tests.helpers import png_data

ALICE = Actor("telegram", "1")
CHAT = ChatRef("telegram", "1", "private")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "imagine.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


async def test_the_answers_weight_is_given_back_before_the_store_trips(
        tmp_path: Path, store: SqliteStore) -> None:
    quotas = Quotas(store, QuotaSection(user_daily_credits=100))
    convo = Conversations(store, BlobStore(LocalBlobs(tmp_path / "blobs"), store))
    budget = DeliveryBudget(1 << 30)
    deliveries = Deliveries(store=store, quotas=quotas, conversations=convo, metrics=Metrics(),
                            budget=budget)
    image = png_data()
    answer = 3 * image.size_bytes  # the answer's body, leased before it was read
    held = await quotas.reserve(ALICE, CHAT, Price(4, 0.04))
    pending = Pending(held.id, JobEvent("j1", "telegram", "1", "1", "m", "1K", "imagine"))
    pending.lease = await budget.acquire(answer, weight=ANSWER_WEIGHT)
    while_stored: list[int] = []

    async def record(result: ProviderResult) -> Turn:
        while_stored.append(budget.held)
        return await convo.record(actor=ALICE, chat=CHAT, prompt="p", model="m", size="1K",
                                  aspect="1:1", parent_id=None, inputs=[], outputs=result.images)

    turn, kept = await deliveries.keep(pending, record, ProviderResult(images=(image,)))
    assert while_stored == [image.size_bytes]  # was answer * ANSWER_WEIGHT until stored
    assert budget.held == image.size_bytes and kept.images == (image,)
    assert (await store.reservation_of(turn.id)) is not None
