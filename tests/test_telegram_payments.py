"""Telegram Stars end to end against the fake Bot API: /buy -> invoice -> pre-checkout -> payment
-> credits -> images -> refund, and each fault: a banned payer, a pack removed between invoice and
payment, a payment delivered twice or after its refund, a restart between pre-checkout and
payment, an update lost while the bot was down, and the store failing while crediting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from bot.config import Settings
from tests.fake_telegram import ADMIN, ALICE, BOB, BotHarness, FakeUser
from tests.fake_telegram_payments import StarsTelegram, running_shop_bot
from tests.store_engines import read_only

Factory = Callable[..., Settings]
SHOP = {"usd_per_star": 0.013, "support": "@shop_help", "packs": [
    {"id": "small", "credits": 50, "stars": 25}, {"id": "big", "credits": 200, "stars": 80},
    {"id": "discord-only", "credits": 5, "discord_sku": "42"}]}
SECTIONS: dict[str, Any] = {"shop": SHOP, "quota": {"user_daily_credits": 0},
                            "bot": {"admins": ["telegram:9001"]}}


def stars(bot: BotHarness) -> StarsTelegram:
    """The harness's fake, with its payment side."""
    assert isinstance(bot.fake, StarsTelegram)
    return bot.fake


async def invoice_for(bot: BotHarness, pack: str = "small",
                      user: FakeUser = ALICE) -> dict[str, Any]:
    """``user`` sends /buy and presses the pack's button; the invoice message."""
    fake = stars(bot)
    fake.user_sends("/buy", user=user)
    menu = await fake.wait_for("sendMessage", chat=fake.private(user))
    fake.press(menu.message, f"by:{pack}", user=user)
    sent = await fake.wait_for("sendInvoice", chat=fake.private(user))
    return sent.message


async def buy(bot: BotHarness, pack: str = "small", user: FakeUser = ALICE) -> str:
    """A whole purchase; the charge id."""
    paid = await stars(bot).pay(await invoice_for(bot, pack, user), user)
    assert paid is not None, "the bot refused the pre-checkout query"
    thanks = await bot.fake.wait_for("sendMessage", lambda c: "Thank you" in c.text)
    assert thanks.chat_id == user.id
    return str(paid["successful_payment"]["telegram_payment_charge_id"])


async def balance(bot: BotHarness, user: FakeUser = ALICE) -> int:
    return (await bot.c.api.usage(user.actor)).paid


async def test_buy_pay_spend_and_refund(settings_factory: Factory) -> None:
    async with running_shop_bot(settings_factory, **SECTIONS) as bot:
        fake = stars(bot)
        fake.user_sends("/buy")
        menu = await fake.wait_for("sendMessage")
        assert "small: 50 credits for 25 ⭐" in menu.text and "big: 200" in menu.text
        assert "discord-only" not in menu.text and "never expire" in menu.text
        assert menu.button_texts == ["50 credits · 25 ⭐", "200 credits · 80 ⭐"]
        fake.press(menu.message, "by:small")
        sent = await fake.wait_for("sendInvoice")
        p = sent.params
        assert (p["currency"], p.get("provider_token")) == ("XTR", None)
        assert sent.message["invoice"]["total_amount"] == 25
        started = time.monotonic()
        paid = await fake.pay(sent.message, ALICE)
        assert paid is not None and time.monotonic() - started < 10  # answered in time
        thanks = await fake.wait_for("sendMessage", lambda c: "Thank you" in c.text)
        assert "50 credits were added" in thanks.text and "50 purchased credits" in thanks.text
        charge = paid["successful_payment"]["telegram_payment_charge_id"]
        assert await balance(bot) == 50

        fake.user_sends("/quota")
        assert "Purchased credits: 50" in (await fake.wait_for("sendMessage")).text
        fake.user_sends("/imagine a fox")  # no free allowance: purchased credits pay for it
        await fake.wait_for("sendPhoto")
        await bot.ledger(ALICE, ["purchase", "reserve", "settle"])
        spent = 50 - await balance(bot)
        assert spent > 0

        fake.user_sends(f"/refund {charge}", user=ADMIN)
        done = await fake.wait_for("sendMessage", chat=fake.private(ADMIN))
        assert f"Refunded 25 ⭐ to telegram:{ALICE.id}" in done.text
        assert f"{50 - spent} of their 50 credits" in done.text
        assert fake.book.sales[charge].refunded_at is not None
        told = await fake.wait_for("sendMessage", lambda c: "was refunded" in c.text)
        assert told.chat_id == ALICE.id and f"{50 - spent} unused credits" in told.text
        assert await balance(bot) == 0
        kinds = await bot.ledger(ALICE)
        assert kinds == ["purchase", "reserve", "settle", "purchase_refund"]
        fake.user_sends(f"/refund {charge}", user=ADMIN)
        again = await fake.wait_for("sendMessage", chat=fake.private(ADMIN))
        assert "already refunded" in again.text
        await fake.expect_none("sendMessage", lambda c: "was refunded" in c.text)


async def test_paysupport_menus_and_groups(settings_factory: Factory) -> None:
    async with running_shop_bot(settings_factory, **SECTIONS) as bot:
        fake = stars(bot)
        menu = [c["command"] for c in fake.commands[("default:", "")]]
        assert "buy" in menu and "paysupport" in menu and "refund" not in menu
        fake.user_sends("/paysupport")
        support = await fake.wait_for("sendMessage")
        assert "@shop_help" in support.text and "cannot" in support.text
        # Polling has subscribed by now (the answer came through it): payments need the query.
        assert "pre_checkout_query" in (fake.allowed_updates or [])
        fake.user_sends("/buy", chat=fake.group())
        assert "private chat" in (await fake.wait_for("sendMessage")).text
        fake.user_sends("/refund nope", user=BOB)
        assert "can't do that" in (await fake.wait_for("sendMessage")).text
        await fake.expect_none("sendInvoice")


async def test_no_shop_no_menu(settings_factory: Factory) -> None:
    async with running_shop_bot(settings_factory) as bot:
        fake = stars(bot)
        assert "buy" not in [c["command"] for c in fake.commands[("default:", "")]]
        fake.user_sends("/buy")
        assert "Nothing is for sale" in (await fake.wait_for("sendMessage")).text


async def test_a_banned_payer(settings_factory: Factory) -> None:
    async with running_shop_bot(settings_factory, **SECTIONS) as bot:
        fake = stars(bot)
        invoice = await invoice_for(bot)
        await bot.c.store.set_user_flags(ALICE.actor.key, banned=True)
        assert await fake.pay(invoice, ALICE) is None  # refused before anything is taken
        ok, why = fake.pre_checkout_answers[-1] or (True, None)
        assert not ok and why and "blocked" in why.lower()
        assert fake.book.sales == {}


async def test_banned_between_pre_checkout_and_payment(settings_factory: Factory) -> None:
    async with running_shop_bot(settings_factory, **SECTIONS) as bot:
        fake = stars(bot)
        paid = await fake.pay(await invoice_for(bot), ALICE, deliver=False)
        assert paid is not None
        await bot.c.store.set_user_flags(ALICE.actor.key, banned=True)
        fake.deliver(paid)
        charge = paid["successful_payment"]["telegram_payment_charge_id"]
        await fake.wait_for("refundStarPayment")  # the money goes back by itself
        assert fake.book.sales[charge].refunded_at is not None
        assert await bot.ledger(ALICE) == []
        await fake.expect_none("sendMessage", lambda c: "Thank you" in c.text)


async def test_pack_removed_between_invoice_and_payment(settings_factory: Factory) -> None:
    async with running_shop_bot(settings_factory, **SECTIONS) as bot:
        invoice = await invoice_for(bot, "big")
        fake = stars(bot)
        shop = {**SHOP, "packs": [{"id": "small", "credits": 50, "stars": 25}]}
        bot.settings = settings_factory(**{**SECTIONS, "shop": shop}, telegram={
            "base_url": fake.base_url, "base_file_url": fake.base_file_url})
        await bot.restart()
        assert await fake.pay(invoice, ALICE) is None
        ok, why = fake.pre_checkout_answers[-1] or (True, None)
        assert not ok and why and "no longer sold" in why
        assert fake.book.sales == {} and await balance(bot) == 0


async def test_a_payment_delivered_twice_credits_once(settings_factory: Factory) -> None:
    async with running_shop_bot(settings_factory, **SECTIONS) as bot:
        fake = stars(bot)
        charge = await buy(bot)
        payment = next(m for m in fake.messages.values() if m.get("successful_payment", {}).get(
            "telegram_payment_charge_id") == charge)
        fake.deliver(payment)
        fake.deliver(payment)
        await fake.expect_none("sendMessage", lambda c: "Thank you" in c.text)
        assert await bot.ledger(ALICE) == ["purchase"] and await balance(bot) == 50


async def test_a_refund_that_overtakes_its_payment(settings_factory: Factory) -> None:
    async with running_shop_bot(settings_factory, **SECTIONS) as bot:
        fake = stars(bot)
        paid = await fake.pay(await invoice_for(bot), ALICE, deliver=False)
        assert paid is not None
        charge = paid["successful_payment"]["telegram_payment_charge_id"]
        fake.telegram_refunds(charge)  # Telegram's refund update arrives first
        await fake.wait_for("sendMessage", lambda c: "was refunded" in c.text)
        fake.deliver(paid)
        await fake.expect_none("sendMessage", lambda c: "Thank you" in c.text)
        assert await bot.ledger(ALICE) == [] and await balance(bot) == 0
        stored = await bot.c.api.shop.find("telegram", charge)
        assert stored is not None and stored.state == "refunded"


async def test_telegram_refunding_by_itself_takes_the_pack_back(settings_factory: Factory) -> None:
    async with running_shop_bot(settings_factory, **SECTIONS) as bot:
        fake = stars(bot)
        charge = await buy(bot)
        fake.telegram_refunds(charge)
        told = await fake.wait_for("sendMessage", lambda c: "was refunded" in c.text)
        assert "50 unused credits" in told.text
        assert await balance(bot) == 0


async def test_restart_between_pre_checkout_and_payment(settings_factory: Factory) -> None:
    async with running_shop_bot(settings_factory, **SECTIONS) as bot:
        fake = stars(bot)
        paid = await fake.pay(await invoice_for(bot), ALICE, deliver=False)
        assert paid is not None
        await bot.restart()
        fake.deliver(paid)
        await fake.wait_for("sendMessage", lambda c: "Thank you" in c.text)
        assert await balance(bot) == 50


async def test_a_payment_whose_update_was_lost_is_credited_at_start(
        settings_factory: Factory) -> None:
    async with running_shop_bot(settings_factory, **SECTIONS) as bot:
        fake = stars(bot)
        invoice = await invoice_for(bot)
        await bot.stop()
        paid = await fake.pay(invoice, ALICE, deliver=False, timeout=0.2)
        assert paid is None  # nobody answered the pre-checkout: Telegram cancels it
        await bot.start()
        paid = await fake.pay(invoice, ALICE, deliver=False)  # paid, the update never delivered
        assert paid is not None
        await bot.restart()  # the start reads the Star transactions back
        thanks = await fake.wait_for("sendMessage", lambda c: "Thank you" in c.text)
        assert thanks.chat_id == ALICE.id
        assert await bot.ledger(ALICE) == ["purchase"]
        await bot.restart()  # and only once
        await fake.expect_none("sendMessage", lambda c: "Thank you" in c.text)
        assert await bot.ledger(ALICE) == ["purchase"]


async def test_the_store_failing_while_crediting(settings_factory: Factory) -> None:
    async with running_shop_bot(settings_factory, **SECTIONS) as bot:
        fake = stars(bot)
        bot.c.api.shop.retry_delays = (0.3,) * 20
        invoice = await invoice_for(bot)
        paid = await fake.pay(invoice, ALICE, deliver=False)
        assert paid is not None
        store = bot.c.store
        async with read_only(store):  # type: ignore[arg-type]
            fake.deliver(paid)
            await fake.expect_none("sendMessage", lambda c: "Thank you" in c.text, within=1.0)
        await store.db.close()  # type: ignore[union-attr]
        store._db = None  # type: ignore[union-attr]
        await store.open()  # the disk is writable again
        await fake.wait_for("sendMessage", lambda c: "Thank you" in c.text, timeout=15)
        assert await bot.ledger(ALICE) == ["purchase"]


async def test_a_stalled_store_refuses_the_pre_checkout_in_time(
        settings_factory: Factory, monkeypatch: Any) -> None:
    from adapters.telegram import payments

    monkeypatch.setattr(payments, "ANSWER_BUDGET", 0.5)
    async with running_shop_bot(settings_factory, **SECTIONS) as bot:
        fake = stars(bot)
        invoice = await invoice_for(bot)
        store = bot.c.store
        real = store.get_user

        async def stalled(key: str) -> Any:
            await asyncio.sleep(30)  # a database that stopped answering
            return await real(key)

        monkeypatch.setattr(store, "get_user", stalled)
        started = time.monotonic()
        assert await fake.pay(invoice, ALICE) is None
        assert time.monotonic() - started < 10  # answered (no) well inside Telegram's limit
        ok, why = fake.pre_checkout_answers[-1] or (True, None)
        assert not ok and why and "cannot be taken right now" in why
        assert fake.book.sales == {}
