"""The operator's shop: revenue by day next to spend (margin), the payments, and refunds.

Refunds go through the platform that took the money (Telegram's ``refundStarPayment``, through
the running Telegram adapter); a Discord purchase is refunded by Discord, which then deletes the
entitlement, and the bot takes the unused credits back by itself (bot/shop.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, timedelta, tzinfo
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import escape

from adapters.web import inbound
from adapters.web.dashboard import usd
from adapters.web.runtime import Runtime
from bot.api import BotApi, BotError, Payment

log = logging.getLogger(__name__)
Tr = Callable[..., str]
#: Payments shown, newest first, of the last DAYS days (the revenue table's span).
SHOWN, DAYS = 50, 30


def _price(p: Payment) -> str:
    return f"{p.stars} ⭐" if p.platform == "telegram" else usd(p.usd)


async def section(env: jinja2.Environment, t: Tr, api: BotApi, csrf: str, zone: tzinfo) -> str:
    """Revenue by day and the latest payments; empty while nothing is (or was) for sale."""
    shop = api.shop
    since = (date.fromisoformat(api.today()) - timedelta(days=DAYS - 1)).isoformat()
    payments = await shop.payments(since_day=since)
    if not shop.settings.enabled and not payments:
        return ""
    macros: Any = env.get_template("shop.html").module
    days = [d for d in await shop.revenue(DAYS) if d.sales or d.refunds or d.spend_usd]
    heads = [t(f"web.op.shop.{k}") for k in ("day", "sales", "stars", "refunds", "revenue",
                                             "spend", "margin")]
    rows = [[d.day, d.sales, d.stars - d.refunded_stars, d.refunds, usd(d.net_usd),
             usd(d.spend_usd), usd(d.margin_usd)] for d in reversed(days)]
    totals = ["Σ", sum(d.sales for d in days), sum(d.stars - d.refunded_stars for d in days),
              sum(d.refunds for d in days), usd(sum(d.net_usd for d in days)),
              usd(sum(d.spend_usd for d in days)), usd(sum(d.margin_usd for d in days))]
    revenue = str(macros.revenue_table(heads, rows, totals, t(
        "web.op.shop.rate", rate=shop.settings.usd_per_star)))
    listed = []
    for p in reversed(payments[-SHOWN:]):
        state = (t("web.op.shop.state_refunded", removed=p.removed) if p.state == "refunded"
                 else t(f"web.op.shop.state_{p.state}"))
        when = p.received_at.astimezone(zone).strftime("%m-%d %H:%M") if p.received_at else ""
        listed.append({"when": when, "user": p.actor_key, "pack": f"{p.pack} ({p.credits})",
                       "price": _price(p), "charge": p.charge_id, "state": state,
                       "platform": p.platform,
                       "refundable": p.state != "refunded" and shop.can_refund(p.platform)})
    heads = [t(f"web.op.shop.{k}") for k in ("when", "user", "pack", "revenue", "charge",
                                             "state", "refund")]
    words = {"refund": t("web.op.shop.refund"), "confirm": t("web.op.shop.refund_confirm")}
    table = str(macros.payments_table(heads, listed, csrf, words, t("web.op.shop.nothing")))
    return (f'<h2>{escape(t("web.op.shop.title"))}</h2>{revenue}'
            f'<h3>{escape(t("web.op.shop.payments_title"))}</h3>{table}')


async def refund(rt: Runtime, request: web.Request, locale: str) -> tuple[str, str]:
    """POST /operator/refund: (flash kind, text)."""
    form = await request.post()
    platform, charge = form.get("platform"), form.get("charge")
    if not isinstance(platform, str) or not isinstance(charge, str) or not charge.strip():
        return "bad", rt.t(locale, "shop.refund_usage")
    try:
        payment = await rt.api.shop.refund(inbound.OPERATOR, platform, charge)
    except BotError as err:
        return "bad", (await rt.told(inbound.operator(request), err)).text
    log.info("web: operator refunded %s:%s of %s", platform, charge, payment.actor_key)
    return "ok", rt.t(locale, "web.op.shop.refunded", charge=charge, removed=payment.removed)
