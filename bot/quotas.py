"""Credit pricing and quota windows: reserve -> settle | refund, on an append-only ledger.

Windows (all checked in one ``BEGIN IMMEDIATE`` transaction):
- ``user_daily`` / ``user_monthly``: allowance credits; 0 means no free allowance (grants only).
- ``chat_daily``: an optional pool for a group chat (0 = off).
- ``global_daily_usd``: the operator's bill cap in USD (0 = off); it applies to admins too.
Bonus credits granted by admins are spent only once the allowance is used up, purchased credits
(``[shop]``) only after those. Calendar days and months are those of ``[quota] timezone``; a
refund goes back to the window the job was charged in.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.catalog import ModelSpec
from bot.config import QuotaSection
from bot.domain import Actor, ChatRef, Usage, WindowUsage
from bot.errors import BadGrant, BadUser, QuotaExceeded
from bot.storage.base import LedgerEntry, LedgerKind, Payment, QuotaTx, Reservation, Store
from bot.storage.standing import Standing

Clock = Callable[[], datetime]
#: The most credits one grant may give (or take back), on every grant path.
MAX_GRANT = 1_000_000
#: A user as the store keys them: a platform we serve and its id (ASCII digits on chat platforms).
_USER_KEY = re.compile(r"(?:telegram|discord):[0-9]{1,20}|web:[0-9A-Za-z_-]{1,64}")


def user_key(text: str) -> str:
    """``text`` when it names a user the way the store keys them (``telegram:42``), else BadUser."""
    if not _USER_KEY.fullmatch(text):
        raise BadUser(text)
    return text


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Price:
    """What one job costs: credits charged to the user and USD toward the global cap."""

    credits: int
    usd: float


class Quotas:
    """Prices jobs and moves credits; every movement is a ledger row."""

    def __init__(self, store: Store, settings: QuotaSection, *, admins: frozenset[str] = frozenset(),
                 clock: Clock = utc_now, owner: str | None = None, paid_expire_days: int = 0) -> None:
        self._store = store
        self._paid_expire = timedelta(days=paid_expire_days) if paid_expire_days else None
        self._owner = owner  # the instance (process) whose reservations these are
        self._cfg = settings
        self._admins = admins
        self._clock = clock
        self._tz = ZoneInfo(settings.timezone)
        self._daily_by_prefix: dict[str, int] = {}  # see set_daily_allowance

    @property
    def owner(self) -> str | None:
        """The instance (process) whose reservations these are."""
        return self._owner

    def price(self, model: ModelSpec, size: str, count: int = 1) -> Price:
        """Credits and USD for ``count`` images of ``model`` at ``size``."""
        return Price(credits=model.credit_cost(size, self._cfg.credit_usd) * count,
                     usd=round(model.price_usd(size) * count, 6))

    def is_exempt(self, actor: Actor) -> bool:
        """Admins listed in ``[bot] admins`` are exempt from the credit windows."""
        # Only [bot] admins: an adapter's vouching (e.g. Discord Manage Server) lets someone
        # moderate, but must not hand out free generations.
        return actor.key in self._admins

    def _periods(self) -> tuple[str, str, datetime, datetime]:
        """Today's and this month's keys in the quota zone, and when each resets (UTC)."""
        local = self._clock().astimezone(self._tz)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        # Add a day in wall-clock terms, then re-resolve the offset (DST days are 23 or 25 h).
        next_day = (day_start + timedelta(days=1)).replace(tzinfo=None).replace(tzinfo=self._tz)
        first = day_start.replace(day=1, tzinfo=None)
        next_month = (first.replace(year=first.year + 1, month=1) if first.month == 12
                      else first.replace(month=first.month + 1)).replace(tzinfo=self._tz)
        return (local.strftime("%Y-%m-%d"), local.strftime("%Y-%m"), next_day.astimezone(UTC),
                next_month.astimezone(UTC))

    def set_daily_allowance(self, key_prefix: str, credits: int) -> None:
        """Give actors keyed ``key_prefix...`` (anonymous web visitors) their own daily default."""
        # A per-user override (set_limits) still wins; this only replaces user_daily_credits.
        self._daily_by_prefix[key_prefix] = credits

    def _default_daily(self, actor_key: str) -> int:
        return next((v for k, v in self._daily_by_prefix.items() if actor_key.startswith(k)),
                    self._cfg.user_daily_credits)

    def _allowance(self, actor_key: str, standing: Standing) -> tuple[int, int]:
        """The actor's daily and monthly allowance: their override, else the configured one."""
        daily, monthly = standing.daily_limit, standing.monthly_limit
        return (self._default_daily(actor_key) if daily is None else daily,
                self._cfg.user_monthly_credits if monthly is None else monthly)

    def _pooled(self, chat: ChatRef | None) -> bool:
        return chat is not None and chat.kind != "private" and self._cfg.chat_daily_credits > 0

    async def reserve(self, actor: Actor, chat: ChatRef | None, price: Price, *,
                      model: str = "", size: str = "") -> Reservation:
        """Hold ``price`` for a job, or raise QuotaExceeded naming the tightest window."""
        day, month, day_reset, month_reset = self._periods()
        cost = price.credits
        take_free, take_bonus, take_paid = cost, 0, 0
        async with self._store.quota_tx() as tx:
            # Every window this job touches, locked before it is read (PostgreSQL: row locks in
            # one order, so many processes queue; SQLite's write lock already holds them). The
            # day's global spend row, which every job needs, is taken last and held the shortest.
            await tx.lock(actor.key, chat.key if chat else None, day, month, spend=False)
            if not self.is_exempt(actor):
                pool = chat.key if chat is not None and self._pooled(chat) else None
                standing = await tx.standing(actor.key, day, month, chat_key=pool)
                daily, monthly = self._allowance(actor.key, standing)
                day_left = daily - standing.used_day
                month_left = monthly - standing.used_month
                free_left = max(0, min(day_left, month_left))
                bonus = standing.bonus
                paid = await self._paid_left(tx, actor.key, day, month, standing.paid)
                take_free = min(cost, free_left)
                take_bonus = min(cost - take_free, bonus)
                take_paid = cost - take_free - take_bonus
                if take_paid > paid:
                    # Name the window that still blocks after the other resets.
                    extra = bonus + paid
                    monthly_blocks = month_left < day_left or max(0, month_left) + extra < cost
                    window, reset = (("user_monthly", month_reset) if monthly_blocks
                                     else ("user_daily", day_reset))
                    raise QuotaExceeded(window, free_left + extra, cost, reset)
                if pool is not None:
                    used = standing.chat_day
                    if used + cost > self._cfg.chat_daily_credits:
                        raise QuotaExceeded("chat_daily", max(0, self._cfg.chat_daily_credits - used),
                                            cost, day_reset)
            await tx.lock(None, None, day, month)
            if self._cfg.global_daily_usd > 0:
                spent = await tx.usd_spent(day)
                if spent + price.usd > self._cfg.global_daily_usd + 1e-9:
                    raise QuotaExceeded("global_daily_usd",
                                        round(max(0.0, self._cfg.global_daily_usd - spent), 4),
                                        price.usd, day_reset)
            reservation = Reservation(
                id=secrets.token_hex(8), actor_key=actor.key,
                chat_key=chat.key if chat else None, credits=take_free, bonus=take_bonus,
                usd=price.usd, day=day, month=month, state="held", created_at=self._clock(),
                owner=self._owner, paid=take_paid,
            )
            await tx.add_reservation(reservation)
            await tx.append(LedgerEntry(
                kind="reserve", actor_key=actor.key, chat_key=reservation.chat_key, day=day,
                month=month, credits=take_free, bonus=-take_bonus, usd=price.usd,
                reservation_id=reservation.id, model=model or None, size=size or None,
                ts=self._clock(), paid=-take_paid))
        return reservation

    async def settle(self, reservation_id: str) -> bool:
        """Turn a held reservation into spending; False when it was already closed."""
        return await self._close(reservation_id, "settle")

    async def refund(self, reservation_id: str, note: str = "") -> bool:
        """Give a held reservation back; False when it was already closed."""
        return await self._close(reservation_id, "refund", note)

    async def _close(self, reservation_id: str, kind: str, note: str = "") -> bool:
        refund = kind == "refund"
        async with self._store.quota_tx() as tx:
            # One conditional update decides: of two closers (two processes) exactly one wins.
            res = await tx.close_reservation(reservation_id, "refunded" if refund else "settled")
            if res is None:
                return False
            await tx.append(LedgerEntry(
                kind="refund" if refund else "settle", actor_key=res.actor_key,
                chat_key=res.chat_key, day=res.day, month=res.month,
                credits=-res.credits if refund else 0, bonus=res.bonus if refund else 0,
                usd=-res.usd if refund else 0.0, reservation_id=reservation_id,
                note=note or None, ts=self._clock(), paid=res.paid if refund else 0))
            if refund and res.clawback:
                # The job held credits of a pack refunded meanwhile: they go with the pack.
                await self._take_paid(tx, res.actor_key, min(res.clawback, res.paid),
                                      "purchase_refund", f"job {reservation_id} refunded after "
                                      "its pack", reservation_id)
        return True

    async def grant(self, actor_key: str, credits: int, *, by: str = "") -> None:
        """Add bonus credits (negative takes them back, never below zero); BadUser / BadGrant."""
        # Every grant path (chat, web, CLI) ends here, so the one limit lives here: unbounded
        # grants overflowed the bonus sum and locked the user out for good.
        user_key(actor_key)
        if credits == 0 or abs(credits) > MAX_GRANT:
            raise BadGrant(credits, MAX_GRANT)
        day, month, _, _ = self._periods()
        async with self._store.quota_tx() as tx:
            await tx.lock(actor_key, None, day, month, spend=False)
            amount = max(credits, -await tx.bonus(actor_key))
            await tx.append(LedgerEntry(kind="grant", actor_key=actor_key, day=day, month=month,
                                        bonus=amount, note=f"by {by}" if by else None,
                                        ts=self._clock()))

    async def refund_stale(self) -> int:
        """Refund what dead instances held (their lease lapsed, or their process is gone)."""
        # A live instance's reservations are never touched; of two processes sweeping at once,
        # each orphan is refunded by exactly one (the conditional close decides).
        count = 0
        for res in await self._store.orphaned_reservations():
            if res.owner is not None and res.owner == self._owner:  # never this process's own
                continue
            if res.turn_id and await self._store.bindings_of(res.turn_id):
                # Its result reached the user (the delivery recorded its messages) before the
                # process died between binding and settling: that is a sale, not a refund.
                await self.settle(res.id)
                continue
            count += await self.refund(res.id, "stale at start-up")
        return count

    async def usage(self, actor: Actor, chat: ChatRef | None = None, *, running: int = 0) -> Usage:
        """What is left in each window, what is held now, and when each window resets."""
        day, month, day_reset, month_reset = self._periods()
        windows: list[WindowUsage] = []
        pool = chat.key if chat is not None and self._pooled(chat) else None
        # Only lapsing bought credits writes here (an expire row); else reads, no transaction.
        view = self._store.quota_tx() if self._paid_expire else self._store.quota_view()
        async with view as tx:
            standing = await tx.standing(actor.key, day, month, chat_key=pool, reserved=True)
            daily, monthly = self._allowance(actor.key, standing)
            windows.append(WindowUsage("user_daily", daily, standing.used_day, day_reset))
            windows.append(WindowUsage("user_monthly", monthly, standing.used_month, month_reset))
            if pool is not None:
                windows.append(WindowUsage("chat_daily", self._cfg.chat_daily_credits,
                                           standing.chat_day, day_reset))
            if self._cfg.global_daily_usd > 0:
                windows.append(WindowUsage("global_daily_usd", self._cfg.global_daily_usd,
                                           round(await tx.usd_spent(day), 6), day_reset))
            reserved, bonus = standing.reserved, standing.bonus
            paid = await self._paid_left(tx, actor.key, day, month, standing.paid)
        return Usage(actor_key=actor.key, windows=tuple(windows), reserved=reserved, bonus=bonus,
                     exempt=self.is_exempt(actor), running=running, paid=paid)

    # ----- purchased credits ([shop]): bought, spent after bonus credits, refunded, expired ---

    async def _take_paid(self, tx: QuotaTx, actor_key: str, credits: int, kind: LedgerKind,
                         note: str, reservation_id: str | None = None) -> None:
        day, month, _, _ = self._periods()
        if credits > 0:
            await tx.append(LedgerEntry(kind=kind, actor_key=actor_key, day=day, month=month,
                                        paid=-credits, note=note, reservation_id=reservation_id,
                                        ts=self._clock()))

    async def _paid_left(self, tx: QuotaTx, actor_key: str, day: str, month: str,
                         paid: int | None = None) -> int:
        """Purchased credits left, after lapsing what is older than ``credits_expire_days``.

        ``paid``: the counter as this transaction already read it.
        """
        paid = await tx.paid(actor_key) if paid is None else paid
        if self._paid_expire is None or paid <= 0:
            return paid
        # Oldest credits are spent first, so what the packs of the last N days cannot account
        # for is what is left of older ones.
        fresh = await tx.purchased_since(actor_key, self._clock() - self._paid_expire)
        if paid > fresh:
            await self._take_paid(tx, actor_key, paid - fresh, "expire",
                                  f"older than {self._paid_expire.days} days")
            return fresh
        return paid

    async def credit_purchase(self, payment: Payment) -> bool:
        """Credit a recorded payment's pack once; False when it was credited (or refunded)."""
        day, month, _, _ = self._periods()
        async with self._store.quota_tx() as tx:
            await tx.lock(payment.actor_key, None, day, month, spend=False)
            current = await tx.payment(payment.platform, payment.charge_id)
            if current is None or current.state != "received":
                return False
            await self._paid_left(tx, payment.actor_key, day, month)  # lapse old ones first
            await tx.close_payment(current, "credited", at=self._clock())
            await tx.append(LedgerEntry(
                kind="purchase", actor_key=current.actor_key, day=day, month=month,
                paid=current.credits, note=f"{current.platform} {current.pack}",
                ts=self._clock()))
        return True

    async def refund_purchase(self, platform: str, charge_id: str) -> Payment | None:
        """Take back what is left of a refunded pack (spent credits stay spent); None if done."""
        day, month, _, _ = self._periods()
        found = await self._store.get_payment(platform, charge_id)
        if found is None or found.state == "refunded":
            return None
        async with self._store.quota_tx() as tx:
            held = await tx.held_paid(found.actor_key)  # jobs' rows before the counters
            await tx.lock(found.actor_key, None, day, month, spend=False)
            current = await tx.payment(platform, charge_id)
            if current is None or current.state == "refunded":
                return None
            removed = 0
            if current.state == "credited":
                removed = min(current.credits, await self._paid_left(tx, current.actor_key, day,
                                                                       month))
                # What jobs in flight hold of it goes too, should they be refunded.
                await tx.mark_clawback(current.actor_key, min(held, current.credits - removed))
                await self._take_paid(tx, current.actor_key, removed, "purchase_refund",
                                      f"{platform} {current.pack} refunded")
            await tx.close_payment(current, "refunded", removed=removed, refund_day=day)
        return await self._store.get_payment(platform, charge_id)

    def now_local(self) -> datetime:
        """The injected clock's time in the quota zone."""
        return self._clock().astimezone(self._tz)

    def today(self) -> str:
        """Today's key in the quota zone."""
        return self._periods()[0]
