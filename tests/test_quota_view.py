"""A caption's usage on SQLite reads without BEGIN IMMEDIATE (Store.quota_view): two trips fewer
on every result's way out, and no wait for another process's write lock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import QuotaSection
from bot.domain import Actor, ChatRef
from bot.errors import StoreUnavailable
from bot.quotas import Price, Quotas
from bot.storage.sqlite import SqliteStore

ALICE = Actor("telegram", "1")
CHAT = ChatRef("telegram", "1", "private")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "imagine.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


async def test_usage_reads_while_another_process_holds_the_write_lock(
        tmp_path: Path, store: SqliteStore) -> None:
    """BEGIN IMMEDIATE waited for the other process's transaction (here: refused after 50 ms)."""
    await Quotas(store, QuotaSection(user_daily_credits=100)).reserve(ALICE, CHAT, Price(4, 0.04))
    other = SqliteStore(tmp_path / "imagine.sqlite3", busy_timeout_ms=50)
    quick = SqliteStore(tmp_path / "imagine.sqlite3", busy_timeout_ms=50)
    await other.open()
    await quick.open()
    try:
        async with other.quota_tx():  # another process's transaction, holding the write lock
            usage = await Quotas(quick, QuotaSection(user_daily_credits=100)).usage(ALICE, CHAT)
    finally:
        await quick.close()
        await other.close()
    assert (usage.windows[0].used, usage.windows[0].limit, usage.reserved) == (4, 100, 4)


async def test_usage_that_may_lapse_bought_credits_still_takes_a_transaction(
        tmp_path: Path, store: SqliteStore) -> None:
    """With credits_expire_days, usage may write an expire row: it keeps BEGIN IMMEDIATE."""
    quotas = Quotas(store, QuotaSection(user_daily_credits=100), paid_expire_days=30)
    await quotas.usage(ALICE, CHAT)  # without another writer: fine
    other = SqliteStore(tmp_path / "imagine.sqlite3", busy_timeout_ms=50)
    quick = SqliteStore(tmp_path / "imagine.sqlite3", busy_timeout_ms=50)
    await other.open()
    await quick.open()
    try:
        async with other.quota_tx():
            lapsing = Quotas(quick, QuotaSection(user_daily_credits=100), paid_expire_days=30)
            with pytest.raises(StoreUnavailable, match="locked"):
                await lapsing.usage(ALICE, CHAT)
    finally:
        await quick.close()
        await other.close()
