"""Telegram Stars: /buy, invoices, pre-checkout answers, payments, refunds and /paysupport.

Digital goods are paid in Telegram Stars: ``sendInvoice`` with currency ``XTR``, no provider
token and exactly one price (https://core.telegram.org/bots/payments-stars,
https://core.telegram.org/bots/api#sendinvoice). Telegram asks before it charges: a
``pre_checkout_query`` that must be answered within 10 seconds or the payment is cancelled
(https://core.telegram.org/bots/api#answerprecheckoutquery), so it is answered in the handler
itself from what the invoice payload carries. The money arrives as a ``successful_payment``
service message keyed by ``telegram_payment_charge_id``; ``refundStarPayment`` gives it back
(https://core.telegram.org/bots/api#refundstarpayment) and a ``refunded_payment`` message
follows (https://core.telegram.org/bots/api#refundedpayment). Bots that sell must answer
``/paysupport`` (https://core.telegram.org/bots/payments-stars). At start the bot's Star
transactions are read back (``getStarTransactions``, chronological; an incoming payment's id is
its ``telegram_payment_charge_id``, https://core.telegram.org/bots/api#startransaction): a
payment whose update was lost while the store was down, or the process dead, is credited then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    TransactionPartnerUser,
    Update,
)
from telegram.constants import ChatType
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    PreCheckoutQueryHandler,
    filters,
)

from adapters.telegram.inbound import Target, actor_of, target_of
from adapters.telegram.runtime import Press, Runtime
from bot.api import (
    Actor,
    BotError,
    Charge,
    NotAllowed,
    Payment,
    RefundFailed,
    normalize_locale,
)

log = logging.getLogger(__name__)
PLATFORM: Final = "telegram"
#: Our share of Telegram's 10 s for the pre-checkout answer (the rest is the round trips).
ANSWER_BUDGET = 5.0
#: getStarTransactions returns at most 100 transactions per call.
PAGE = 100
_PACK = "by:"
Callback = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


class Payments:
    """The shop on Telegram: commands, the pack buttons, and every payment update."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.api = rt.api
        self.shop = rt.api.shop
        self._told: set[str] = set()  # refunds the payer was told about (one message each)

    def handlers(self) -> list[BaseHandler[Any, Any, None]]:
        """PTB handlers; they go before the imagine handler, which takes any other message."""
        return [
            CommandHandler("buy", self._command(self.buy)),
            CommandHandler("paysupport", self._command(self.paysupport)),
            CommandHandler("refund", self._command(self.refund)),
            CallbackQueryHandler(self.on_pack, pattern=rf"^{_PACK}"),
            PreCheckoutQueryHandler(self.on_pre_checkout),
            MessageHandler(filters.SUCCESSFUL_PAYMENT, self.on_paid),
            MessageHandler(filters.StatusUpdate.REFUNDED_PAYMENT, self.on_refunded),
        ]

    def start(self) -> None:
        """Offer refunds through this bot, and credit what was paid while we were away."""
        self.shop.register_refunder(PLATFORM, self._refund_stars)
        if self.shop.settings.enabled:
            self.rt.tasks.spawn(self._reconcile(), "stars-reconcile")

    def _command(self, work: Callable[[Message, Actor, list[str]], Coroutine[Any, Any, None]]
                 ) -> Callback:
        async def callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            message, user = update.effective_message, update.effective_user
            if message is None or user is None or user.is_bot:
                return
            actor = actor_of(user)
            self.rt.run(work(message, actor, list(context.args or [])), actor, target_of(message),
                        "shop")
        return callback

    # ----- /buy and the pack buttons ---------------------------------------------------------

    async def buy(self, message: Message, actor: Actor, args: list[str]) -> None:
        """The packs with their prices, a button each (in a private chat only)."""
        locale = await self.api.locale_for(actor)
        t = self.api.t
        if message.chat.type != ChatType.PRIVATE:
            await self.rt.send.text(target_of(message), t(locale, "shop.private_only"))
            return
        packs = self.shop.packs(PLATFORM)
        if not packs:
            await self.rt.send.text(target_of(message), t(locale, "shop.closed"))
            return
        lines = [t(locale, "shop.title")]
        lines += [t(locale, "shop.line", pack=p.id, credits=p.credits,
                    price=t(locale, "shop.stars", stars=p.stars)) for p in packs]
        lines += ["", self._terms(locale), t(locale, "shop.pick")]
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton(
            t(locale, "shop.button", credits=p.credits, stars=p.stars),
            callback_data=f"{_PACK}{p.id}")] for p in packs])
        await self.rt.send.text(target_of(message), "\n".join(lines), keyboard)

    def _terms(self, locale: str) -> str:
        days = self.shop.settings.credits_expire_days
        lasting = (self.api.t(locale, "shop.expire", days=days) if days
                   else self.api.t(locale, "shop.never_expire"))
        return f"{self.api.t(locale, 'shop.spent_after')} {lasting}"

    async def on_pack(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A pack button: its invoice goes to the chat the button is in."""
        query = update.callback_query
        if query is None or query.message is None:
            return
        actor = actor_of(query.from_user)
        press = Press(query, alert=True)
        pack_id = (query.data or "").removeprefix(_PACK)
        self.rt.run(self._invoice(press, actor, query.message.chat.id, pack_id), actor,
                    Target(query.message.chat.id), "invoice", press)

    async def _invoice(self, press: Press, actor: Actor, chat_id: int, pack_id: str) -> None:
        pack = self.shop.pack(pack_id, PLATFORM)  # UnknownPack / ShopClosed: the guard's alert
        locale = await self.api.locale_for(actor)
        t = self.api.t
        title = t(locale, "shop.invoice_title", credits=pack.credits)
        await press.answer()
        # No provider token: Stars need none (the Bot API says to pass an empty one).
        await self.rt.bot.send_invoice(
            chat_id, title=title[:32],
            description=t(locale, "shop.invoice_description", credits=pack.credits)[:255],
            payload=self.shop.payload(actor, pack), currency="XTR",
            prices=[LabeledPrice(title[:32], pack.stars or 0)])

    # ----- the payment itself ----------------------------------------------------------------

    async def on_pre_checkout(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Accept only an invoice whose pack still sells at its price, from its unbanned payer."""
        query = update.pre_checkout_query
        if query is None:
            return
        actor = actor_of(query.from_user)
        try:
            why = await asyncio.wait_for(self.shop.check_invoice(
                actor, query.invoice_payload, query.currency, query.total_amount), ANSWER_BUDGET)
        except (BotError, TimeoutError) as exc:  # the store is away: nothing may be taken
            log.warning("stars: pre-checkout of %s refused (%s)", actor.key, type(exc).__name__)
            why = "shop.unavailable"
        try:
            if why is None:
                await query.answer(ok=True)
            else:
                locale = normalize_locale(actor.locale) or self.api.settings.bot.locale
                await query.answer(ok=False, error_message=self.api.t(locale, why))
        except TelegramError as err:
            log.error("stars: could not answer the pre-checkout of %s (%s)", actor.key, err)

    async def on_paid(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Money arrived: record and credit it (once per charge id), then thank the payer."""
        message = update.effective_message
        if message is None or message.successful_payment is None or message.from_user is None:
            return
        paid = message.successful_payment
        actor = actor_of(message.from_user)
        charge = self.shop.telegram_charge(actor, paid.telegram_payment_charge_id,
                                           paid.invoice_payload, paid.total_amount)
        if charge is None:
            log.error("stars: payment %s of %s carries a payload that is not ours; not credited",
                      paid.telegram_payment_charge_id, actor.key)
            return
        target = Target(message.chat_id)
        self.rt.run(self._credit(charge, target), actor, target, "payment")

    async def _credit(self, charge: Charge, target: Target) -> None:
        receipt = await self.shop.receive(charge)
        if receipt.fresh:
            locale = await self.api.locale_for(charge.actor)
            await self.rt.send.text(target, self.api.t(
                locale, "shop.thanks", credits=receipt.payment.credits, balance=receipt.balance))

    async def on_refunded(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Telegram gave the Stars back (our refund, or its own): the pack goes."""
        message = update.effective_message
        if message is None or message.refunded_payment is None or message.from_user is None:
            return
        back = message.refunded_payment
        actor = actor_of(message.from_user)
        charge = self.shop.telegram_charge(actor, back.telegram_payment_charge_id,
                                           back.invoice_payload, back.total_amount)
        if charge is None:
            return
        target = Target(message.chat_id)
        self.rt.run(self._take_back(charge, target), actor, target, "refund")

    async def _take_back(self, charge: Charge, target: Target) -> None:
        await self.shop.refunded(charge)
        payment = await self.shop.find(PLATFORM, charge.charge_id)
        if payment is None or payment.state != "refunded" or charge.charge_id in self._told:
            return
        self._told.add(charge.charge_id)
        if (await self.api.user(payment.actor_key)).banned:
            return  # a banned payer's money went back by itself; they were told of the ban
        locale = await self.api.locale_for(charge.actor)
        await self.rt.send.text(target, self.api.t(locale, "shop.refunded",
                                                   credits=payment.credits,
                                                   removed=payment.removed))

    async def _refund_stars(self, payment: Payment) -> None:
        """The refunder the shop calls: refundStarPayment for the payer."""
        user_id = int(payment.actor_key.partition(":")[2])
        try:
            await self.rt.bot.refund_star_payment(user_id, payment.charge_id)
        except BadRequest as err:
            if "CHARGE_ALREADY_REFUNDED" in err.message:
                return  # given back already (by Telegram, or an earlier try): the pack goes
            raise RefundFailed(err.message) from err
        except TelegramError as err:
            raise RefundFailed(str(err)) from err

    async def _reconcile(self) -> None:
        """Credit payments (and take back refunds) this process never saw as updates."""
        offset, fresh = 0, 0
        try:
            while True:
                page = await self.rt.bot.get_star_transactions(offset=offset, limit=PAGE)
                for tx in page.transactions:
                    fresh += await self._replay(tx.id, tx.amount, tx.source, tx.receiver)
                if len(page.transactions) < PAGE:
                    break
                offset += PAGE
        except (TelegramError, BotError) as err:
            log.warning("stars: could not read the Star transactions back (%s)", err)
            return
        if fresh:
            log.warning("stars: credited %d payment(s) whose update never came through", fresh)

    async def _replay(self, charge_id: str, amount: int, source: object,
                      receiver: object) -> int:
        partner = source if source is not None else receiver
        if not isinstance(partner, TransactionPartnerUser) or not partner.invoice_payload:
            return 0
        known = await self.shop.find(PLATFORM, charge_id)
        incoming = source is not None
        if known is not None and (known.state == "refunded" or (
                incoming and known.state == "credited")):
            return 0
        actor = actor_of(partner.user)
        charge = self.shop.telegram_charge(actor, charge_id, partner.invoice_payload, amount)
        if charge is None:
            return 0
        if not incoming:
            await self.shop.refunded(charge)
            return 0
        receipt = await self.shop.receive(charge)
        if receipt.fresh:
            locale = await self.api.locale_for(actor)
            await self.rt.send.text(Target(int(actor.user_id)), self.api.t(
                locale, "shop.thanks", credits=receipt.payment.credits, balance=receipt.balance))
        return int(receipt.fresh)

    # ----- /paysupport and /refund -----------------------------------------------------------

    async def paysupport(self, message: Message, actor: Actor, args: list[str]) -> None:
        """Who answers payment questions, and what can be refunded."""
        locale = await self.api.locale_for(actor)
        contact = self.shop.settings.support or self.api.t(locale, "shop.support_nobody")
        await self.rt.send.text(target_of(message), self.api.t(locale, "shop.support",
                                                               contact=contact))

    async def refund(self, message: Message, actor: Actor, args: list[str]) -> None:
        """/refund CHARGE_ID: an admin gives a payment back; its unused credits go."""
        locale = await self.api.locale_for(actor)
        if len(args) != 1:
            if not self.api.is_admin(actor):
                raise NotAllowed()
            await self.rt.send.text(target_of(message), self.api.t(locale, "shop.refund_usage"))
            return
        before = await self.shop.find(PLATFORM, args[0]) if self.api.is_admin(actor) else None
        payment = await self.shop.refund(actor, PLATFORM, args[0])
        key = "shop.refund_again" if before is not None and before.state == "refunded" else (
            "shop.refund_done")
        await self.rt.send.text(target_of(message), self.api.t(
            locale, key, stars=payment.stars, user=payment.actor_key, removed=payment.removed,
            credits=payment.credits))
