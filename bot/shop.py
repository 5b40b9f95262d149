"""Selling credit packs (``[shop]``): Telegram Stars and Discord premium apps, on the one ledger.

Platforms tell the shop facts: an invoice is about to be paid (Telegram's pre-checkout), money
arrived (``successful_payment``, an entitlement), a payment was refunded. The shop records every
payment first, keyed by the platform's charge id (``telegram_payment_charge_id``, the
entitlement id), then credits it once through :mod:`bot.quotas`: a repeated or late update finds
it credited, and a store that fails meanwhile is retried (what still fails stays recorded as
received and is credited at the next start). Refunds go through the platform (a registered
refunder: Telegram's ``refundStarPayment``), then take back what is left of the pack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from bot.domain import Actor
from bot.errors import BotError, NotAllowed, NotFound, StoreUnavailable
from bot.quotas import Quotas
from bot.reports import last_days
from bot.revenue import RevenueDay, revenue_by_day
from bot.shop_config import ShopSection
from bot.storage.base import Payment, Store

log = logging.getLogger(__name__)
T = TypeVar("T")
Platform = Literal["telegram", "discord"]
#: Waits between tries while the store refuses a payment (about four minutes in all); what still
#: fails is picked up at the next start (recorded ones here, unrecorded ones by the platform).
RETRY_DELAYS: tuple[float, ...] = (0.5, 1, 2, 4, 8, 15, 30, 60, 60, 60)
#: The invoice payload: version, pack, payer, credits, Stars. Telegram allows 1-128 bytes
#: (https://core.telegram.org/bots/api#sendinvoice); ours stay under 80.
_PAYLOAD = "ib1"
Refunder = Callable[[Payment], Awaitable[None]]


class ShopClosed(BotError):
    """Nothing is for sale on this platform."""

    key = "shop.closed"
    exit_code = 2


class UnknownPack(BotError):
    """No pack by that id is sold here (any more)."""

    key = "shop.unknown_pack"
    exit_code = 2


class NotRefundable(BotError):
    """This platform's payments cannot be refunded from the bot."""

    key = "shop.not_refundable"
    exit_code = 2

    def __init__(self, platform: str) -> None:
        super().__init__(f"no refunds through the bot on {platform}", platform=platform)


class RefundFailed(BotError):
    """The platform refused the refund; ``reason`` is its words."""

    key = "shop.refund_failed"
    exit_code = 4

    def __init__(self, reason: str) -> None:
        super().__init__(f"refund refused: {reason}", reason=reason)


@dataclass(frozen=True, slots=True)
class Pack:
    """A pack on sale: credits for Stars (Telegram) or for a consumable SKU (Discord)."""

    id: str
    credits: int
    stars: int | None = None
    discord_sku: str | None = None
    discord_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Charge:
    """What a platform says was paid: by whom, its charge id, and what it buys."""

    platform: Platform
    charge_id: str
    actor: Actor
    pack: str
    credits: int
    stars: int = 0
    usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Receipt:
    """A payment as stored after :meth:`Shop.receive`; ``fresh`` when this call credited it."""

    payment: Payment
    fresh: bool
    #: Purchased credits the payer has now.
    balance: int = 0


@dataclass(frozen=True, slots=True)
class InvoiceTerms:
    """What a Telegram invoice payload promised: the pack, the payer, credits and price."""

    pack: str
    user_id: str
    credits: int
    stars: int


class Shop:
    """The packs on sale and every payment's life: recorded, credited once, refunded."""

    def __init__(self, settings: ShopSection, store: Store, quotas: Quotas, *,
                 admins: frozenset[str] = frozenset()) -> None:
        self.settings = settings
        self._store = store
        self._quotas = quotas
        self._admins = admins
        self._packs = {p.id: Pack(p.id, p.credits, p.stars, p.discord_sku, p.discord_usd)
                       for p in settings.packs}
        self._refunders: dict[str, Refunder] = {}
        self.retry_delays: Sequence[float] = RETRY_DELAYS

    # ----- the catalog -----------------------------------------------------------------------

    def packs(self, platform: Platform) -> list[Pack]:
        """The packs sold on ``platform`` (a pack without its price there is hidden)."""
        key = "stars" if platform == "telegram" else "discord_sku"
        return [p for p in self._packs.values() if getattr(p, key) is not None]

    def pack(self, pack_id: str, platform: Platform) -> Pack:
        """A pack sold on ``platform``; ShopClosed / UnknownPack."""
        sold = self.packs(platform)
        if not sold:
            raise ShopClosed()
        found = next((p for p in sold if p.id == pack_id), None)
        if found is None:
            raise UnknownPack(pack_id, pack=pack_id)
        return found

    def by_sku(self, sku: str) -> Pack | None:
        """The pack a Discord SKU buys."""
        return next((p for p in self._packs.values() if p.discord_sku == sku), None)

    def skus(self) -> list[str]:
        """Every Discord SKU on sale."""
        return [p.discord_sku for p in self._packs.values() if p.discord_sku]

    # ----- Telegram invoices -----------------------------------------------------------------

    @staticmethod
    def payload(actor: Actor, pack: Pack) -> str:
        """The invoice payload: it carries what was promised, so no state is kept in between."""
        return f"{_PAYLOAD}:{pack.id}:{actor.user_id}:{pack.credits}:{pack.stars or 0}"

    @staticmethod
    def terms(payload: str) -> InvoiceTerms | None:
        """What an invoice payload promised; None for one that is not ours."""
        parts = payload.split(":")
        if len(parts) != 5 or parts[0] != _PAYLOAD or not all(p.isdigit() for p in parts[2:]):
            return None
        return InvoiceTerms(parts[1], parts[2], int(parts[3]), int(parts[4]))

    async def check_invoice(self, actor: Actor, payload: str, currency: str,
                            amount: int) -> str | None:
        """The pre-checkout answer: None to accept, else the catalog key of why not."""
        terms = self.terms(payload)
        if terms is None or currency != "XTR":
            return "shop.invoice_invalid"
        pack = self._packs.get(terms.pack)
        # The pack was removed or repriced after the invoice went out: nothing is taken.
        if (pack is None or pack.stars is None or pack.credits != terms.credits
                or pack.stars != terms.stars or amount != terms.stars):
            return "shop.pack_gone"
        if terms.user_id != actor.user_id:
            return "shop.not_yours"
        if (await self._store.get_user(actor.key)).banned:
            return "error.banned"
        return None

    def telegram_charge(self, actor: Actor, charge_id: str, payload: str,
                        amount: int) -> Charge | None:
        """A successful payment as a Charge: the payload's promise, at the Stars paid."""
        terms = self.terms(payload)
        if terms is None:
            return None
        return Charge("telegram", charge_id, actor, terms.pack, terms.credits, amount,
                      round(amount * self.settings.usd_per_star, 6))

    def discord_charge(self, actor: Actor, entitlement_id: str, sku: str) -> Charge | None:
        """An entitlement as a Charge (None for a SKU no pack sells)."""
        pack = self.by_sku(sku)
        if pack is None:
            return None
        return Charge("discord", entitlement_id, actor, pack.id, pack.credits, 0,
                      pack.discord_usd)

    # ----- money in, money back --------------------------------------------------------------

    async def _retry(self, work: Callable[[], Awaitable[T]], what: str) -> T:
        """``work()``, tried again while the store refuses it (RETRY_DELAYS)."""
        for delay in (*self.retry_delays, None):
            try:
                return await work()
            except StoreUnavailable as exc:
                if delay is None:
                    log.error("shop: %s failed for good (%s); it is retried at the next start",
                              what, exc.detail)
                    raise
                log.warning("shop: %s failed (%s); retrying in %.1f s", what, exc.detail, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _new(self, charge: Charge, state: Literal["received", "refunded"] = "received",
             note: str | None = None) -> Payment:
        today = self._quotas.today()
        return Payment(platform=charge.platform, charge_id=charge.charge_id,
                       actor_key=charge.actor.key, pack=charge.pack, credits=charge.credits,
                       stars=charge.stars, usd=charge.usd, state=state, day=today,
                       refund_day=today if state == "refunded" else None, note=note,
                       received_at=self._quotas.now_local())

    async def receive(self, charge: Charge) -> Receipt:
        """Record a payment, then credit it once (a banned payer's is refunded where we can)."""
        what = f"payment {charge.platform}:{charge.charge_id} of {charge.actor.key}"
        payment = await self._retry(lambda: self._store.record_payment(self._new(charge)), what)
        fresh = False
        if payment.state == "received":
            banned = (await self._store.get_user(payment.actor_key)).banned
            refunder = self._refunders.get(payment.platform)
            if banned and refunder is not None:
                # The credits could never be used: the money goes back instead.
                log.warning("shop: %s comes from a banned user; refunding it", what)
                try:
                    await refunder(payment)
                    await self._retry(lambda: self._quotas.refund_purchase(
                        payment.platform, payment.charge_id), what)
                except RefundFailed as err:
                    log.error("shop: could not refund %s (%s); crediting it", what, err.detail)
            current = await self._store.get_payment(payment.platform, payment.charge_id)
            if current is not None and current.state == "received":
                fresh = await self._retry(lambda: self._quotas.credit_purchase(payment), what)
        final = await self._store.get_payment(payment.platform, payment.charge_id) or payment
        usage = await self._quotas.usage(charge.actor)
        return Receipt(final, fresh, usage.paid)

    async def refunded(self, charge: Charge) -> Payment | None:
        """The platform refunded ``charge`` (maybe before we saw it paid): take the pack back."""
        what = f"refund of {charge.platform}:{charge.charge_id}"
        known = await self._retry(lambda: self._store.get_payment(
            charge.platform, charge.charge_id), what)
        if known is None:
            # Out of order: the refund came first. Recorded refunded, the payment never credits.
            return await self._retry(lambda: self._store.record_payment(
                self._new(charge, "refunded", "refunded before it was seen paid")), what)
        return await self._retry(lambda: self._quotas.refund_purchase(
            charge.platform, charge.charge_id), what)

    def register_refunder(self, platform: Platform, refunder: Refunder) -> None:
        """How ``platform`` gives money back (the running adapter registers it)."""
        self._refunders[platform] = refunder

    def can_refund(self, platform: str) -> bool:
        """Whether payments of ``platform`` can be refunded from the bot right now."""
        return platform in self._refunders

    async def refund(self, by: Actor, platform: str, charge_id: str) -> Payment:
        """An operator's refund: the platform gives the money back, then the pack goes."""
        if not (by.is_admin or by.key in self._admins):
            raise NotAllowed()
        payment = await self._store.get_payment(platform, charge_id.strip())
        if payment is None:
            raise NotFound(f"no payment {platform}:{charge_id}")
        if payment.state == "refunded":
            return payment
        refunder = self._refunders.get(platform)
        if refunder is None:
            raise NotRefundable(platform)
        await refunder(payment)
        log.info("shop: %s refunded %s:%s of %s", by.key, platform, charge_id, payment.actor_key)
        done = await self._retry(lambda: self._quotas.refund_purchase(platform, payment.charge_id),
                                 f"refund of {platform}:{charge_id}")
        return done or await self._store.get_payment(platform, payment.charge_id) or payment

    async def catch_up(self) -> int:
        """Credit what was recorded but not credited (the store failed, the process died)."""
        count = 0
        for payment in await self._store.payments(state="received"):
            count += await self._quotas.credit_purchase(payment)
        if count:
            log.warning("shop: credited %d payment(s) left uncredited before", count)
        return count

    async def find(self, platform: str, charge_id: str) -> Payment | None:
        """A payment by its platform's charge id."""
        return await self._store.get_payment(platform, charge_id)

    async def payments(self, actor_key: str | None = None,
                       since_day: str | None = None) -> list[Payment]:
        """Payments (one user's, or from a day on), oldest first."""
        return await self._store.payments(actor_key=actor_key, since_day=since_day)

    async def revenue(self, days: int | None = 30,
                      actor_key: str | None = None) -> list[RevenueDay]:
        """Sales, refunds and spend by day (of one user): the last ``days`` days, or every day."""
        if days is None:
            return revenue_by_day(await self._store.payments(actor_key=actor_key),
                                  await self._store.ledger(actor_key))
        span = last_days(self._quotas.today(), days)
        ledger = await self._store.ledger_since(span[0])
        return revenue_by_day(
            await self._store.payments(actor_key=actor_key, since_day=span[0]),
            [e for e in ledger if actor_key is None or e.actor_key == actor_key], span)

    async def mark_consumed(self, platform: Platform, charge_id: str) -> None:
        """The platform's entitlement for a payment was consumed (Discord)."""
        await self._retry(lambda: self._store.mark_consumed(platform, charge_id),
                          f"consumed {platform}:{charge_id}")
