"""Telegram Stars for the fake Bot API: invoices, pre-checkout queries, payments, refunds.

As Telegram documents them (https://core.telegram.org/bots/payments-stars and the Bot API's
Payments section, https://core.telegram.org/bots/api#payments):

- ``sendInvoice``: title 1-32 characters, description 1-255, payload 1-128 bytes; for Stars the
  currency is ``XTR``, the provider token empty, ``prices`` exactly one item, no tips;
- a payment starts with a ``pre_checkout_query`` update (only for a bot subscribed to it), which
  must be answered within 10 seconds (``answerPreCheckoutQuery``; ``error_message`` required when
  ``ok`` is false), or the payment is cancelled; then a ``successful_payment`` service message
  arrives, carrying ``telegram_payment_charge_id``;
- ``refundStarPayment(user_id, telegram_payment_charge_id)`` gives the Stars back once
  (CHARGE_ALREADY_REFUNDED after that) and a ``refunded_payment`` service message follows;
- ``getStarTransactions`` lists the bot's transactions in chronological order: an incoming
  payment's id is its ``telegram_payment_charge_id``, a refund's is the original's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from bot.config import Settings
from tests.fake_telegram import BOT_USER, FAST, ApiError, BotHarness, FakeTelegram

PRE_CHECKOUT_DEADLINE = 10.0
_NO_TIPS = ("max_tip_amount", "suggested_tip_amounts")


@dataclass
class Sale:
    """One payment as Telegram keeps it."""

    charge_id: str
    user: dict[str, Any]
    chat_id: int
    payload: str
    amount: int
    date: int
    refunded_at: int | None = None


@dataclass
class Book:
    """The fake's payment state: invoices sent, queries asked, sales made."""

    invoices: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    queries: dict[str, dict[str, Any]] = field(default_factory=dict)
    sales: dict[str, Sale] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class StarsPayments:
    """Mixed into FakeTelegram: the Bot API's payment methods and a paying user's side."""

    # Provided by FakeTelegram.
    chats: dict[int, dict[str, Any]]
    messages: dict[tuple[int, int], dict[str, Any]]
    pre_checkout_deadline = PRE_CHECKOUT_DEADLINE

    def _chat(self, params: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _store(self, chat: dict[str, Any], sender: dict[str, Any], **fields: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _push(self, kind: str, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def _markup(self, params: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError

    @property
    def book(self) -> Book:
        """The payment state (made on first use)."""
        found: Book | None = self.__dict__.get("_book")
        if found is None:
            found = self.__dict__["_book"] = Book()
        return found

    # ----- Bot API methods -------------------------------------------------------------------

    async def _m_sendInvoice(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        chat = self._chat(p)
        title, description = str(p.get("title") or ""), str(p.get("description") or "")
        payload = str(p.get("payload") or "")
        prices = _json(p.get("prices")) or []
        if not 1 <= len(title) <= 32:
            raise ApiError(400, "Bad Request: TITLE_INVALID")
        if not 1 <= len(description) <= 255:
            raise ApiError(400, "Bad Request: DESCRIPTION_INVALID")
        if not 1 <= len(payload.encode()) <= 128:
            raise ApiError(400, "Bad Request: INVOICE_PAYLOAD_INVALID")
        if p.get("currency") != "XTR":
            raise ApiError(400, "Bad Request: this fake sells digital goods: currency XTR only")
        if p.get("provider_token"):
            raise ApiError(400, "Bad Request: PAYMENT_PROVIDER_INVALID")
        if len(prices) != 1 or any(p.get(k) for k in _NO_TIPS):
            raise ApiError(400, "Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID")
        amount = prices[0].get("amount")
        if not isinstance(amount, int) or amount < 1 or not prices[0].get("label"):
            raise ApiError(400, "Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID")
        invoice = {"title": title, "description": description, "currency": "XTR",
                   "total_amount": amount, "start_parameter": p.get("start_parameter") or ""}
        message = self._store(chat, BOT_USER, invoice=invoice, reply_markup=self._markup(p))
        self.book.invoices[(chat["id"], message["message_id"])] = {**invoice, "payload": payload}
        return message

    async def _m_answerPreCheckoutQuery(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        query = self.book.queries.get(str(p.get("pre_checkout_query_id")))
        if query is None or query["answer"] is not None or (
                time.monotonic() - query["asked"] > self.pre_checkout_deadline):
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or "
                                "query ID is invalid")
        ok = p.get("ok") in (True, "true", "True")
        if not ok and not p.get("error_message"):
            raise ApiError(400, "Bad Request: error_message is required when ok is false")
        query["answer"] = (ok, p.get("error_message"))
        query["answered"].set()
        return True

    async def _m_refundStarPayment(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        sale = self.book.sales.get(str(p.get("telegram_payment_charge_id") or ""))
        if sale is None:
            raise ApiError(400, "Bad Request: CHARGE_NOT_FOUND")
        if int(p.get("user_id") or 0) != sale.user["id"]:
            raise ApiError(400, "Bad Request: USER_ID_INVALID")
        if sale.refunded_at is not None:
            raise ApiError(400, "Bad Request: CHARGE_ALREADY_REFUNDED")
        self._refund(sale)
        return True

    async def _m_getStarTransactions(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        limit = int(p.get("limit") or 100)
        if not 1 <= limit <= 100:
            raise ApiError(400, "Bad Request: limit must be between 1 and 100")
        rows: list[tuple[int, dict[str, Any]]] = []
        for sale in self.book.sales.values():
            partner = {"type": "user", "transaction_type": "invoice_payment", "user": sale.user,
                       "invoice_payload": sale.payload}
            rows.append((sale.date, {"id": sale.charge_id, "amount": sale.amount,
                                     "date": sale.date, "source": partner}))
            if sale.refunded_at is not None:
                rows.append((sale.refunded_at, {"id": sale.charge_id, "amount": sale.amount,
                                                "date": sale.refunded_at, "receiver": partner}))
        rows.sort(key=lambda r: r[0])
        offset = int(p.get("offset") or 0)
        return {"transactions": [row for _, row in rows[offset:offset + limit]]}

    # ----- the paying user's side ------------------------------------------------------------

    def _refund(self, sale: Sale, *, deliver: bool = True) -> dict[str, Any]:
        sale.refunded_at = int(time.time())
        refund = {"currency": "XTR", "total_amount": sale.amount, "invoice_payload": sale.payload,
                  "telegram_payment_charge_id": sale.charge_id}
        message = self._store(self.chats[sale.chat_id], sale.user, refunded_payment=refund)
        if deliver:
            self._push("message", message)
        return message

    async def pay(self, invoice: dict[str, Any], user: Any, *, deliver: bool = True,
                  timeout: float | None = None) -> dict[str, Any] | None:  # noqa: ASYNC109
        """``user`` pays ``invoice``: pre-checkout, then (if accepted) the successful payment.

        Returns the ``successful_payment`` message (pushed unless ``deliver`` is false), or None
        when the bot refused the pre-checkout query or did not answer it in time.
        """
        terms = self.book.invoices[(invoice["chat"]["id"], invoice["message_id"])]
        query_id = str(next(self.book.ids) + 500_000)
        answered = asyncio.Event()
        self.book.queries[query_id] = {"asked": time.monotonic(), "answer": None,
                                       "answered": answered}
        self._push("pre_checkout_query", {
            "id": query_id, "from": user.as_dict(), "currency": "XTR",
            "total_amount": terms["total_amount"], "invoice_payload": terms["payload"]})
        wait = self.pre_checkout_deadline if timeout is None else timeout
        try:
            await asyncio.wait_for(answered.wait(), wait)
        except TimeoutError:
            return None  # Telegram cancels the payment
        ok, _ = self.book.queries[query_id]["answer"]
        if not ok:
            return None
        charge_id = f"stxT{secrets.token_hex(12)}"
        chat_id = user.id  # the payment is a service message in the payer's private chat
        sale = Sale(charge_id, user.as_dict(), chat_id, terms["payload"], terms["total_amount"],
                    int(time.time()))
        self.book.sales[charge_id] = sale
        message = self._store(self.chats[chat_id], user.as_dict(), successful_payment={
            "currency": "XTR", "total_amount": sale.amount, "invoice_payload": sale.payload,
            "telegram_payment_charge_id": charge_id, "provider_payment_charge_id": ""})
        if deliver:
            self._push("message", message)
        return message

    @property
    def pre_checkout_answers(self) -> list[tuple[bool, str | None] | None]:
        """How the bot answered each pre-checkout query, oldest first (None: not answered)."""
        return [q["answer"] for q in self.book.queries.values()]

    def deliver(self, message: dict[str, Any]) -> None:
        """(Re)deliver a stored service message as an update, e.g. a payment Telegram repeats."""
        self._push("message", message)

    def telegram_refunds(self, charge_id: str, *, deliver: bool = True) -> dict[str, Any]:
        """Telegram gives the Stars back by itself (a dispute): a refunded_payment message."""
        return self._refund(self.book.sales[charge_id], deliver=deliver)


class StarsTelegram(FakeTelegram, StarsPayments):
    """The fake Bot API with Telegram Stars."""


@asynccontextmanager
async def running_shop_bot(settings_factory: Callable[..., Settings],
                           **sections: Any) -> AsyncIterator[BotHarness]:
    """Like ``fake_telegram.running_bot``, on a fake that takes payments."""
    fake = StarsTelegram()
    await fake.start()
    telegram = {"base_url": fake.base_url, "base_file_url": fake.base_file_url,
                **sections.pop("telegram", {})}
    limits = {"shutdown_grace_seconds": 1.0, **sections.pop("limits", {})}
    harness = BotHarness(fake, settings_factory(telegram=telegram, limits=limits, **sections),
                         None, FAST)
    try:
        await harness.start()
        yield harness
    finally:
        with contextlib.suppress(Exception):
            await harness.stop()
        await fake.stop()
