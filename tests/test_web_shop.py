"""The operator view's shop: revenue by day next to spend, the payments, and refunds from the page
(through the platform's refunder, as the running Telegram adapter registers it)."""

from __future__ import annotations

from bot.domain import Actor
from bot.shop import Charge, RefundFailed
from bot.storage.base import Payment
from tests.test_web_harness import Factory, running_console
from tests.test_web_operator import login

SHOP = {"usd_per_star": 0.02, "packs": [
    {"id": "small", "credits": 50, "stars": 25, "discord_sku": "77", "discord_usd": 0.99}]}
ALICE = Actor("telegram", "1001")
BOB = Actor("discord", "2002")


async def test_revenue_payments_and_a_refund_from_the_page(settings_factory: Factory) -> None:
    async with running_console(settings_factory, shop=SHOP,
                               quota={"user_daily_credits": 0}) as run:
        shop = run.core.api.shop
        await shop.receive(Charge("telegram", "stxCHARGE1", ALICE, "small", 50, 25, 0.5))
        await shop.receive(Charge("discord", "555", BOB, "small", 50, 0, 0.99))
        refunded: list[str] = []

        async def telegram(payment: Payment) -> None:
            if payment.charge_id == "stxBROKEN":
                raise RefundFailed("CHARGE_NOT_FOUND")
            refunded.append(payment.charge_id)

        shop.register_refunder("telegram", telegram)
        v, _, _ = await login(run)
        try:
            page = await v.open("/operator")
            assert "Revenue, last 30 days" in page and "Payments" in page
            assert "$1.49" in page  # 25 Stars at $0.02 plus one $0.99 Discord sale
            assert "stxCHARGE1" in page and "555" in page
            # Only the Telegram payment has a refund button: Discord refunds through Discord.
            assert page.count('action="/operator/refund"') == 1
            status, _ = await v.post("/operator/refund", {"platform": "telegram",
                                                          "charge": "stxCHARGE1"}, csrf="")
            assert status == 403  # no CSRF token
            status, _ = await v.post("/operator/refund", {
                "platform": "telegram", "charge": "stxCHARGE1", "csrf": v.csrf}, csrf="")
            assert status == 303 and refunded == ["stxCHARGE1"]
            page = await v.open("/operator")
            assert "Refunded stxCHARGE1: 50 unused credits taken back." in page
            assert page.count('action="/operator/refund"') == 0
            assert (await run.core.api.usage(ALICE)).paid == 0
            await v.post("/operator/refund", {"platform": "discord", "charge": "555",
                                              "csrf": v.csrf}, csrf="")
            assert "refunds there go through discord" in (await v.open("/operator")).lower()
            await v.post("/operator/refund", {"platform": "telegram", "charge": "nope",
                                              "csrf": v.csrf}, csrf="")
            assert 'class="flash bad"' in await v.open("/operator")
            await shop.receive(Charge("telegram", "stxBROKEN", ALICE, "small", 50, 25, 0.5))
            await v.post("/operator/refund", {"platform": "telegram", "charge": "stxBROKEN",
                                              "csrf": v.csrf}, csrf="")
            assert "The refund was refused: CHARGE_NOT_FOUND" in await v.open("/operator")
            assert (await run.core.api.usage(ALICE)).paid == 50  # nothing was taken back
        finally:
            await v.close()


async def test_no_shop_no_section(settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run:
        v, _, _ = await login(run)
        try:
            assert "Revenue, last 30 days" not in await v.open("/operator")
        finally:
            await v.close()
