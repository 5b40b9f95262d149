"""HTML fragments of the operator view: figures, chart, tables, live queue, gallery.

The markup is in templates/dashboard.html (Jinja2 macros, autoescaped); this module prepares
values. Only the charts' SVG is drawn in Python (charts.py escapes what it writes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import tzinfo
from typing import Any

import jinja2
from markupsafe import Markup

from adapters.web import charts
from adapters.web.runtime import WebJob
from bot.api import GalleryItem, Overview, Rates, SchedulerStats, Standing, Total, excerpt

Tr = Callable[..., str]
#: Refund notes with a sentence of their own in the catalogs (web.op.why.*).
WHY = frozenset({"UpstreamBusy", "UpstreamError", "UpstreamConfig", "UpstreamNoCredit",
                 "JobTimeout", "NoImage", "InternalError", "refused", "undeliverable", "stale"})
_CANCEL_NOTES = frozenset({"Cancelled", "CancelledError", "HandedOver"})
#: Outcomes whose credits were given back.
REFUNDED = frozenset({"refused", "failed", "cancelled"})
_OUTCOME_ICON = {"ok": "✓", "refused": "⛔", "failed": "⚠", "cancelled": "⏹", "running": "…"}


def why(t: Tr, note: str) -> str:
    """A sentence for a refund's note (an error's class name, or the core's own word)."""
    if note.startswith("failover to "):
        return t("web.op.why.failover", provider=note.removeprefix("failover to "))
    if note in _CANCEL_NOTES:
        return t("web.op.why.cancelled")
    key = "stale" if note == "stale at start-up" else note
    if key in WHY:
        return t(f"web.op.why.{key}")
    return t("web.op.why.other", note=note or "?")


def usd(value: float) -> str:
    """Dollars with cents."""
    return f"${value:,.2f}"


def credits(value: float) -> str:
    """Whole credits."""
    return f"{round(value):,}"


def _macros(env: jinja2.Environment) -> Any:
    return env.get_template("dashboard.html").module


def kpis(env: jinja2.Environment, t: Tr, ov: Overview, snap: SchedulerStats) -> str:
    """The row of headline figures."""
    def tile(label: str, value: str, sub: str = "", css: str = "") -> dict[str, str]:
        return {"label": label, "value": value, "sub": sub, "css": css}

    today = ov.today_total
    r = ov.rates
    return str(_macros(env).kpis([
        tile(t("web.op.today_usd"), usd(today.usd), t("web.op.today_credits",
                                                       credits=credits(today.credits)), "today"),
        tile(t("web.op.today_images"), str(today.images),
             t("web.op.today_users", users=ov.today_users)),
        tile(t("web.op.waiting"), str(snap.queued), t("web.op.waiting_sub"), "waiting"),
        tile(t("web.op.running"), str(snap.running), t("web.op.running_sub"), "running"),
        tile(t("web.op.refusals"), f"{r.percent(r.refused):.1f}%",
             t("web.op.of_jobs", part=r.refused, jobs=r.finished), "warn" if r.refused else ""),
        tile(t("web.op.errors"), f"{r.percent(r.failed):.1f}%",
             t("web.op.of_jobs", part=r.failed, jobs=r.finished), "bad" if r.failed else ""),
    ]))


def rates_line(t: Tr, label: str, r: Rates) -> str:
    """Outcome counts for one period: delivered, refused, failed and cancelled apart."""
    delivered = r.finished - r.refused - r.failed - r.cancelled
    return t("web.op.rates_line", period=label, jobs=r.finished, delivered=delivered,
             refused=r.refused, refused_pct=f"{r.percent(r.refused):.1f}", failed=r.failed,
             failed_pct=f"{r.percent(r.failed):.1f}", cancelled=r.cancelled)


def chart_box(env: jinja2.Environment, t: Tr, ov: Overview) -> str:
    """Four charts (USD / credits by model / platform) switched by radio buttons, no script."""
    plots = []
    for metric, fmt in (("usd", usd), ("credits", credits)):
        for by in ("model", "platform"):
            series = ov.series[f"{metric}_{by}"]
            label = t(f"web.op.chart_{metric}_{by}")
            # The SVG is drawn by charts.py, which escapes the few names it writes.
            svg = Markup("".join(charts.stacked_bars(
                ov.days, series, today=ov.today, fmt=fmt, label=label,
                chart_id=f"chart-{metric}-{by}", shape=shape, integer=metric == "credits")
                for shape in ("wide", "narrow")))
            plots.append({"id": f"{metric}-{by}", "svg": svg,
                          "legend": [(n, fmt(sum(v))) for n, v in series.items()]})
    today = ov.today_total
    readout = t("web.op.readout", day=ov.today, usd=usd(today.usd), credits=credits(today.credits),
                images=today.images)
    labels = {k: t(f"web.op.{k}") for k in ("usd", "credits", "by_model", "by_platform")}
    return str(_macros(env).chart_box(labels, plots, readout, usd(today.usd)))


def totals_table(env: jinja2.Environment, t: Tr, title: str, rows: list[Total]) -> str:
    """Images, credits and USD per group over the period."""
    heads = [title, t("web.op.images"), t("web.op.credits"), t("web.op.usd")]
    cells = [[r.name, r.images, credits(r.credits), usd(r.usd)] for r in rows]
    return str(_macros(env).totals_table(heads, cells, t("web.op.nothing_yet")))


def users_table(env: jinja2.Environment, t: Tr, rows: list[Total],
                standing: dict[str, Standing], csrf: str, zone: tzinfo) -> str:
    """Top users with their bonus, ban state and quick actions."""
    heads = [t(k) for k in ("web.op.user", "web.op.images", "web.op.credits", "web.op.usd",
                            "web.op.bonus", "web.op.last_seen", "web.op.actions")]
    users = []
    for r in rows:
        user = standing.get(r.name, Standing())
        users.append({"name": r.name, "banned": user.banned, "bonus": user.bonus,
                      "images": r.images,
                      "credits": credits(r.credits), "usd": usd(r.usd),
                      "when": r.last.astimezone(zone).strftime("%m-%d %H:%M") if r.last else ""})
    words = {k: t(f"web.op.{k}") for k in ("blocked", "grant_short", "ban", "unban")}
    return str(_macros(env).users_table(heads, users, csrf, words, t("web.op.nothing_yet")))


def live(env: jinja2.Environment, t: Tr, snap: SchedulerStats, web_jobs: list[WebJob]) -> str:
    """Queue and in-flight jobs, per user, waiting apart from running."""
    owners = [{"owner": o, "running": t("web.op.running_n", n=r),
               "waiting": t("web.op.waiting_n", n=q)}
              for o, r, q in sorted(((o, r, q) for o, (r, q) in snap.by_owner.items() if r or q),
                                    key=lambda x: (-x[1], -x[2], x[0]))]
    now = time.monotonic()
    groups = []
    for title, started in ((t("web.op.running"), True), (t("web.op.waiting"), False)):
        jobs = [{"owner": j.owner,
                 "text": t("web.op.running_job", label=excerpt(j.label, 60),
                           elapsed=j.elapsed(now)) if started else
                 t("web.op.waiting_job", label=excerpt(j.label, 60), position=j.position or "–")}
                for j in web_jobs if (j.stage == "started") == started]
        if jobs:
            groups.append({"title": f'{t("web.op.web_jobs")}: {title}', "jobs": jobs})
    head = t("web.op.live_head", queued=snap.queued, running=snap.running)
    return str(_macros(env).live(head, "" if owners else t("web.op.idle"), owners, groups))


def gallery(env: jinja2.Environment, t: Tr, items: list[GalleryItem], zone: tzinfo) -> str:
    """Recent generations as thumbnails with prompt, user, model, cost and outcome."""
    cells = []
    for it in items:
        w, _, h = it.aspect.partition(":")
        prompt = (excerpt(it.prompt, 90) if it.prompt else
                  t("web.op.no_prompt", why=why(t, it.note)))
        # A refunded job cost nothing: saying its price would overstate the spend.
        cost = (t("web.op.refunded") if it.outcome in REFUNDED else
                t("web.op.cost", credits=credits(it.credits), usd=usd(it.usd)))
        cells.append({"outcome": it.outcome, "turn_id": it.turn_id if it.images else None,
                      "w": w, "h": h, "icon": _OUTCOME_ICON.get(it.outcome, "?"),
                      "prompt": prompt, "who": f"{it.actor} · {it.model} {it.size}",
                      "cost": cost, "when": it.when.astimezone(zone).strftime("%m-%d %H:%M"),
                      "label": t(f"web.op.outcome.{it.outcome}")})
    return str(_macros(env).gallery(cells, t("web.op.nothing_yet")))
