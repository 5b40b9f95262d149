"""HTML fragments of the operator view: figures, chart, tables, live queue, gallery."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import tzinfo
from html import escape

from adapters.web import charts
from adapters.web.jobs import WebJob
from adapters.web.reads import GalleryItem, Overview, Rates, Total
from bot.jobs import SchedulerStats
from bot.present import excerpt

Tr = Callable[..., str]
#: Refund notes with a sentence of their own in the catalogs (web.op.why.*).
WHY = frozenset({"UpstreamBusy", "UpstreamError", "UpstreamConfig", "UpstreamNoCredit",
                 "JobTimeout", "NoImage", "InternalError", "refused", "undeliverable", "stale"})
_CANCEL_NOTES = frozenset({"Cancelled", "CancelledError"})
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


def kpis(t: Tr, ov: Overview, snap: SchedulerStats) -> str:
    """The row of headline figures."""
    def tile(label: str, value: str, sub: str = "", css: str = "") -> str:
        return (f'<div class="kpi {css}"><span class="k">{escape(label)}</span>'
                f'<b class="v">{escape(value)}</b><span class="s">{escape(sub)}</span></div>')

    today = ov.today_total
    r = ov.rates
    return "".join([
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
    ])


def rates_line(t: Tr, label: str, r: Rates) -> str:
    """Outcome counts for one period."""
    delivered = r.finished - r.refused - r.failed - r.cancelled
    return escape(t("web.op.rates_line", period=label, jobs=r.finished, delivered=delivered,
                    refused=r.refused,
                    refused_pct=f"{r.percent(r.refused):.1f}", failed=r.failed,
                    failed_pct=f"{r.percent(r.failed):.1f}", cancelled=r.cancelled))


def chart_box(t: Tr, ov: Overview) -> str:
    """Four charts (USD / credits by model / platform) switched by radio buttons, no script."""
    radios = ('<input type="radio" name="metric" id="m-usd" checked class="vh">'
              '<input type="radio" name="metric" id="m-cr" class="vh">'
              '<input type="radio" name="by" id="b-model" checked class="vh">'
              '<input type="radio" name="by" id="b-plat" class="vh">')
    seg = (f'<div class="segs"><div class="seg"><label for="m-usd">{escape(t("web.op.usd"))}</label>'
           f'<label for="m-cr">{escape(t("web.op.credits"))}</label></div>'
           f'<div class="seg"><label for="b-model">{escape(t("web.op.by_model"))}</label>'
           f'<label for="b-plat">{escape(t("web.op.by_platform"))}</label></div></div>')
    boxes = []
    for metric, fmt in (("usd", usd), ("credits", credits)):
        for by in ("model", "platform"):
            series = ov.series[f"{metric}_{by}"]
            label = t(f"web.op.chart_{metric}_{by}")
            svg = "".join(charts.stacked_bars(ov.days, series, today=ov.today, fmt=fmt,
                                              label=label, chart_id=f"chart-{metric}-{by}",
                                              shape=shape, integer=metric == "credits")
                          for shape in ("wide", "narrow"))
            totals = {n: fmt(sum(v)) for n, v in series.items()}
            boxes.append(f'<div class="plot p-{metric}-{by}">{svg}'
                         f"{charts.legend(list(series), totals)}</div>")
    today = ov.today_total
    readout = t("web.op.readout", day=ov.today, usd=usd(today.usd), credits=credits(today.credits),
                images=today.images)
    return (f'<div class="chartbox">{radios}{seg}{"".join(boxes)}'
            f'<p class="readout" id="readout" data-today="{escape(usd(today.usd))}">'
            f"{escape(readout)}</p></div>")


def totals_table(t: Tr, title: str, rows: list[Total]) -> str:
    """Images, credits and USD per group over the period."""
    head = (f"<tr><th>{escape(title)}</th><th>{escape(t('web.op.images'))}</th>"
            f"<th>{escape(t('web.op.credits'))}</th><th>{escape(t('web.op.usd'))}</th></tr>")
    body = "".join(f"<tr><td>{escape(r.name)}</td><td>{r.images}</td><td>{credits(r.credits)}"
                   f"</td><td>{usd(r.usd)}</td></tr>" for r in rows)
    empty = f'<tr><td colspan="4" class="muted">{escape(t("web.op.nothing_yet"))}</td></tr>'
    return f'<table class="tbl"><thead>{head}</thead><tbody>{body or empty}</tbody></table>'


def users_table(t: Tr, rows: list[Total], flags: dict[str, tuple[bool, int]], csrf: str,
                zone: tzinfo) -> str:
    """Top users with their bonus, ban state and quick actions."""
    head = "".join(f"<th>{escape(t(k))}</th>" for k in (
        "web.op.user", "web.op.images", "web.op.credits", "web.op.usd", "web.op.bonus",
        "web.op.last_seen", "web.op.actions"))
    body = []
    for r in rows:
        banned, bonus = flags.get(r.name, (False, 0))
        badge = f' <span class="badge bad">{escape(t("web.op.blocked"))}</span>' if banned else ""
        when = r.last.astimezone(zone).strftime("%m-%d %H:%M") if r.last else ""
        body.append(
            f'<tr><td class="who">{escape(r.name)}{badge}</td><td>{r.images}</td>'
            f"<td>{credits(r.credits)}</td><td>{usd(r.usd)}</td><td>{bonus}</td><td>{when}</td>"
            f'<td class="row-actions"><button type="button" class="btn ghost small" '
            f'data-fill="{escape(r.name)}">{escape(t("web.op.grant_short"))}</button>'
            f'<form method="post" action="/operator/ban" class="inline">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            f'<input type="hidden" name="user" value="{escape(r.name)}">'
            f'<input type="hidden" name="banned" value="{"0" if banned else "1"}">'
            f'<button class="btn ghost small {"" if banned else "danger"}">'
            f'{escape(t("web.op.unban" if banned else "web.op.ban"))}</button></form></td></tr>')
    empty = f'<tr><td colspan="7" class="muted">{escape(t("web.op.nothing_yet"))}</td></tr>'
    return (f'<div class="scroll"><table class="tbl users"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body) or empty}</tbody></table></div>')


def live(t: Tr, snap: SchedulerStats, web_jobs: list[WebJob]) -> str:
    """Queue and in-flight jobs, per user (the page refreshes this every few seconds)."""
    owners = sorted(((o, r, q) for o, (r, q) in snap.by_owner.items() if r or q),
                    key=lambda x: (-x[1], -x[2], x[0]))
    lines = "".join(f'<li><span class="who">{escape(o)}</span>'
                    f'<span class="pill run">{escape(t("web.op.running_n", n=r))}</span>'
                    f'<span class="pill wait">{escape(t("web.op.waiting_n", n=q))}</span></li>'
                    for o, r, q in owners)
    now = time.monotonic()
    running = [j for j in web_jobs if j.stage == "started"]
    waiting = [j for j in web_jobs if j.stage != "started"]
    web_part = ""
    for title, jobs in ((t("web.op.running"), running), (t("web.op.waiting"), waiting)):
        if not jobs:
            continue
        items = "".join(
            f'<li><span class="who">{escape(j.owner)}</span> ' + escape(
                t("web.op.running_job", label=excerpt(j.label, 60), elapsed=j.elapsed(now))
                if j.stage == "started" else
                t("web.op.waiting_job", label=excerpt(j.label, 60), position=j.position or "–"))
            + "</li>" for j in jobs)
        web_part += (f'<h3>{escape(t("web.op.web_jobs"))}: {escape(title)}</h3>'
                     f'<ul class="plain">{items}</ul>')
    idle = f'<p class="muted">{escape(t("web.op.idle"))}</p>' if not owners else ""
    head = escape(t("web.op.live_head", queued=snap.queued, running=snap.running))
    return f'<p class="live-head">{head}</p>{idle}<ul class="plain owners">{lines}</ul>{web_part}'


def gallery(t: Tr, items: list[GalleryItem], zone: tzinfo) -> str:
    """Recent generations as thumbnails with prompt, user, model, cost and outcome."""
    cells = []
    for it in items:
        if it.turn_id and it.images:
            w, _, h = it.aspect.partition(":")
            pic = (f'<a href="/img/{escape(it.turn_id)}/0" target="_blank" rel="noopener">'
                   f'<img src="/img/{escape(it.turn_id)}/0/preview" alt="" '
                   f'width="{escape(w)}" height="{escape(h)}"></a>')
        else:
            pic = f'<div class="noimg">{_OUTCOME_ICON.get(it.outcome, "?")}</div>'
        prompt = excerpt(it.prompt, 90) if it.prompt else t("web.op.no_prompt",
                                                             why=why(t, it.note))
        when = it.when.astimezone(zone).strftime("%m-%d %H:%M")
        outcome = t(f"web.op.outcome.{it.outcome}")
        # A refunded job cost nothing: saying its price would overstate the spend.
        cost = (t("web.op.refunded") if it.outcome in REFUNDED else
                t("web.op.cost", credits=credits(it.credits), usd=usd(it.usd)))
        cells.append(
            f'<figure class="tile o-{escape(it.outcome)}">{pic}<figcaption>'
            f'<p class="prompt">{escape(prompt)}</p>'
            f'<p class="meta">{escape(it.actor)} · {escape(it.model)} {escape(it.size)}</p>'
            f'<p class="meta">{escape(cost)}'
            f' · {when} '
            f'<span class="badge o-{escape(it.outcome)}">{escape(outcome)}</span></p>'
            "</figcaption></figure>")
    if not cells:
        return f'<p class="muted">{escape(t("web.op.nothing_yet"))}</p>'
    return f'<div class="gallery">{"".join(cells)}</div>'
