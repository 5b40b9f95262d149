"""Revenue by day next to spend: what packs brought in (Stars, USD-equivalent) and images cost.

Sales count on the quota day a payment arrived, refunds on the day they were made; spend is the
ledger's USD of that day (jobs held or settled), so a day's margin is ``net_usd - spend_usd``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.storage.base import LedgerEntry, Payment


@dataclass(slots=True)
class RevenueDay:
    """One quota day's sales, refunds and spend."""

    day: str
    sales: int = 0
    stars: int = 0
    usd: float = 0.0
    refunds: int = 0
    refunded_stars: int = 0
    refunded_usd: float = 0.0
    spend_usd: float = 0.0
    #: Credits sold that day.
    credits: int = 0
    by_platform: dict[str, float] = field(default_factory=dict)

    @property
    def net_usd(self) -> float:
        """Revenue less refunds."""
        return self.usd - self.refunded_usd

    @property
    def margin_usd(self) -> float:
        """Revenue less refunds less what the images cost."""
        return self.net_usd - self.spend_usd


def revenue_by_day(payments: Iterable[Payment], ledger: Iterable[LedgerEntry],
                   days: Iterable[str] | None = None) -> list[RevenueDay]:
    """Per-day rows, oldest first: every day in ``days`` (or every day with anything to show)."""
    rows: dict[str, RevenueDay] = {d: RevenueDay(d) for d in days or ()}
    fixed = bool(rows)

    def row(day: str) -> RevenueDay | None:
        if day not in rows and not fixed:
            rows[day] = RevenueDay(day)
        return rows.get(day)

    for p in payments:
        if (sale := row(p.day)) is not None:
            sale.sales += 1
            sale.stars += p.stars
            sale.usd += p.usd
            sale.credits += p.credits
            sale.by_platform[p.platform] = sale.by_platform.get(p.platform, 0.0) + p.usd
        if p.state == "refunded" and p.refund_day and (back := row(p.refund_day)) is not None:
            back.refunds += 1
            back.refunded_stars += p.stars
            back.refunded_usd += p.usd
    for e in ledger:
        if e.usd and (spent := row(e.day)) is not None:
            spent.spend_usd += e.usd
    return [rows[d] for d in sorted(rows)]
