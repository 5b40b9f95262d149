"""Discord premium apps end to end against the fake Discord: /buy -> SKU purchase button ->
entitlement -> credits -> consumed -> images -> refund, and each fault: a banned payer, a SKU no
pack sells (removed meanwhile), an entitlement delivered twice or after its deletion, purchases
made while the bot was away, and the store failing while crediting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from bot.config import Settings
from tests.fake_discord import RunningBot, discord_settings, private_answer, result_of, running_bot
from tests.fake_discord_payments import ShopDiscord
from tests.store_engines import read_only

Factory = Callable[..., Settings]


def shop_settings(settings_factory: Factory, fake: ShopDiscord, skus: list[str],
                  **extra: Any) -> Settings:
    packs = [{"id": "small", "credits": 50, "stars": 25, "discord_sku": skus[0],
              "discord_usd": 0.99}]
    packs += [{"id": f"pack{i}", "credits": 10 * i, "discord_sku": s}
              for i, s in enumerate(skus[1:], start=2)]
    return discord_settings(settings_factory, fake, shop={"packs": packs},
                            quota={"user_daily_credits": 0}, **extra)


@asynccontextmanager
async def shop_bot(settings_factory: Factory, *skus: str, sync_commands: bool = False,
                   **extra: Any) -> AsyncIterator[tuple[ShopDiscord, RunningBot, list[str]]]:
    async with ShopDiscord() as fake:
        ids = list(skus) or [fake.add_sku("50 credits")]
        for sku in ids:
            if int(sku) not in fake.skus:
                fake.skus[int(sku)] = {"id": sku, "type": 3, "application_id": str(fake.bot.id),
                                       "name": sku, "slug": sku, "flags": 4}
        async with running_bot(fake, shop_settings(settings_factory, fake, ids, **extra),
                               sync_commands=sync_commands) as bot:
            yield fake, bot, ids


async def consumed(fake: ShopDiscord, entitlement: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    await fake.wait_for("consume", lambda e: e.data["entitlement"]["id"] == entitlement,
                        timeout=timeout)


async def paid(bot: RunningBot, user_id: int) -> int:
    from bot.domain import Actor

    return (await bot.core.api.usage(Actor("discord", str(user_id)))).paid


async def kinds(bot: RunningBot, user_id: int) -> list[str]:
    return [e.kind for e in await bot.core.store.ledger(f"discord:{user_id}")]


async def test_buy_pay_spend_and_refund(settings_factory: Factory) -> None:
    async with shop_bot(settings_factory) as (fake, bot, (sku,)):
        ann = fake.user("ann")
        menu = await private_answer(fake, await fake.slash("buy", user=ann))
        assert menu.ephemeral and "small: 50 credits for $0.99" in menu.text
        buttons = [c for c in menu._walk() if c.get("type") == 2]
        assert buttons == [{"type": 2, "style": 6, "sku_id": sku, "disabled": False}]
        assert not fake.errors

        entitlement = await fake.purchase(ann, sku)
        await consumed(fake, entitlement)
        assert await paid(bot, ann.id) == 50
        assert fake.entitlements[int(entitlement)]["consumed"]
        stored = await bot.core.api.shop.find("discord", entitlement)
        assert stored is not None and stored.consumed and stored.usd == 0.99

        ix = await fake.slash("imagine", prompt="a fox", user=ann)
        await result_of(fake, ix)
        for _ in range(100):
            if await kinds(bot, ann.id) == ["purchase", "reserve", "settle"]:
                break
            await asyncio.sleep(0.05)
        left = await paid(bot, ann.id)
        assert 0 < left < 50
        quota = await private_answer(fake, await fake.slash("quota", user=ann))
        assert f"Purchased credits: {left}" in quota.text

        await fake.purchase(ann, sku)  # consumed, so it can be bought again
        await fake.refund(entitlement)  # Discord refunds the first purchase
        for _ in range(100):
            if (await kinds(bot, ann.id))[-1:] == ["purchase_refund"]:
                break
            await asyncio.sleep(0.05)
        assert await paid(bot, ann.id) == 50  # the second pack is untouched
        refunded = await bot.core.api.shop.find("discord", entitlement)
        assert refunded is not None and refunded.state == "refunded"
        assert refunded.removed == left


async def test_an_entitlement_delivered_twice_credits_once(settings_factory: Factory) -> None:
    async with shop_bot(settings_factory) as (fake, bot, (sku,)):
        bo = fake.user("bo")
        entitlement = await fake.purchase(bo, sku)
        await consumed(fake, entitlement)
        await fake.redeliver(entitlement)
        await fake.redeliver(entitlement)
        await asyncio.sleep(0.5)
        assert await kinds(bot, bo.id) == ["purchase"] and await paid(bot, bo.id) == 50


async def test_a_deletion_that_overtakes_its_purchase(settings_factory: Factory) -> None:
    async with shop_bot(settings_factory) as (fake, bot, (sku,)):
        cy = fake.user("cy")
        entitlement = await fake.purchase(cy, sku, online=False)
        await fake.refund(entitlement, online=False)
        await fake.redeliver(entitlement, "ENTITLEMENT_DELETE")
        await fake.redeliver(entitlement, "ENTITLEMENT_CREATE")
        await asyncio.sleep(0.5)
        assert await kinds(bot, cy.id) == [] and await paid(bot, cy.id) == 0
        stored = await bot.core.api.shop.find("discord", entitlement)
        assert stored is not None and stored.state == "refunded"


async def test_a_banned_payer_is_credited_for_an_unban(settings_factory: Factory) -> None:
    async with shop_bot(settings_factory) as (fake, bot, (sku,)):
        di = fake.user("di")
        await bot.core.store.set_user_flags(f"discord:{di.id}", banned=True)
        entitlement = await fake.purchase(di, sku)
        await consumed(fake, entitlement)  # Discord refunds only through its support
        assert await paid(bot, di.id) == 50


async def test_purchases_made_while_away_are_credited_at_start(settings_factory: Factory) -> None:
    async with ShopDiscord() as fake:
        sku, gone = fake.add_sku("50 credits"), fake.add_sku("retired")
        ed = fake.user("ed")
        early = await fake.purchase(ed, sku, online=False)
        orphan = await fake.purchase(ed, gone, online=False)
        settings = shop_settings(settings_factory, fake, [sku])
        async with running_bot(fake, settings) as bot:
            await consumed(fake, early)
            assert await paid(bot, ed.id) == 50
            await asyncio.sleep(0.3)
            # A SKU no pack sells (removed from [shop]): left unconsumed, not credited.
            assert not fake.entitlements[int(orphan)]["consumed"]
        settings = shop_settings(settings_factory, fake, [sku, gone])
        async with running_bot(fake, settings) as bot:  # the pack is sold again
            await consumed(fake, orphan)
            assert await paid(bot, ed.id) == 50 + 20
            assert await kinds(bot, ed.id) == ["purchase", "purchase"]


async def test_the_store_failing_while_crediting(settings_factory: Factory) -> None:
    async with shop_bot(settings_factory) as (fake, bot, (sku,)):
        bot.core.api.shop.retry_delays = (0.3,) * 20
        fay = fake.user("fay")
        store = bot.core.store
        async with read_only(store):  # type: ignore[arg-type]
            entitlement = await fake.purchase(fay, sku)
            await asyncio.sleep(1.0)
            assert not fake.entitlements[int(entitlement)]["consumed"]  # not before it is ours
        await store.db.close()  # type: ignore[union-attr]
        store._db = None  # type: ignore[union-attr]
        await store.open()
        await consumed(fake, entitlement, timeout=15)
        assert await kinds(bot, fay.id) == ["purchase"]


async def test_buy_is_offered_only_with_packs_on_discord(settings_factory: Factory) -> None:
    async with ShopDiscord() as fake, running_bot(fake, discord_settings(
            settings_factory, fake, shop={"packs": [{"id": "tg", "credits": 5, "stars": 3}]}),
            sync_commands=True):
        assert "buy" not in [c["name"] for c in fake.commands]
    async with shop_bot(settings_factory, sync_commands=True) as (fake, _, _):
        synced = next(c for c in fake.commands if c["name"] == "buy")
        assert synced["name_localizations"]["zh-CN"] == "购买"
