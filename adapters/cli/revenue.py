"""``imagine-bot usage``'s revenue by day: packs sold (Stars, USD-equivalent) next to spend."""

from __future__ import annotations

from bot.api import RevenueDay

HEADER = ["day", "sales", "stars", "refunds", "refunded_stars", "revenue_usd", "spend_usd",
          "margin_usd"]


def rows(days: list[RevenueDay]) -> list[list[str]]:
    """One row per day; USD figures net of refunds, margin = revenue - spend."""
    return [[d.day, str(d.sales), str(d.stars), str(d.refunds), str(d.refunded_stars),
             f"{d.net_usd:.4f}", f"{d.spend_usd:.4f}", f"{d.margin_usd:.4f}"] for d in days]


def totals(days: list[RevenueDay]) -> list[str]:
    """The sums of every column."""
    return ["total", str(sum(d.sales for d in days)), str(sum(d.stars for d in days)),
            str(sum(d.refunds for d in days)), str(sum(d.refunded_stars for d in days)),
            f"{sum(d.net_usd for d in days):.4f}", f"{sum(d.spend_usd for d in days):.4f}",
            f"{sum(d.margin_usd for d in days):.4f}"]
