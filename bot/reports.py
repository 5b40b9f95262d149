"""The operator's figures, folded from the ledger and the newest turns (``api.reports``).

Every credit movement is a ledger row, so spending, outcomes and top users are folds over the
last 30 days of it (``Store.ledger_since``); the gallery reads the newest turns directly. Only
values are made here; the web console draws them (docs/architecture.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from bot.catalog import ModelSpec
from bot.domain import Actor
from bot.quotas import Quotas
from bot.storage.base import LedgerEntry, Store

__all__ = ["DAYS", "GalleryItem", "JobRow", "OperatorReport", "Overview", "Rates", "Reports",
           "Standing", "Total", "job_rows", "last_days", "overview"]

DAYS = 30
Outcome = str  # "ok" | "refused" | "failed" | "cancelled" | "running"
_CANCEL_NOTES = {"Cancelled", "CancelledError", "stale at start-up"}
_EPOCH = datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True, slots=True)
class JobRow:
    """One reservation's life: who, what, how much, and how it ended."""

    id: str
    actor: str
    day: str
    model: str
    size: str
    credits: int
    usd: float
    ts: datetime
    outcome: Outcome = "running"
    note: str = ""

    @property
    def platform(self) -> str:
        """The platform part of the actor key."""
        return self.actor.partition(":")[0]


def _outcome(kind: str, note: str) -> Outcome:
    if kind == "settle":
        return "ok"
    if note == "refused":
        return "refused"
    return "cancelled" if note in _CANCEL_NOTES else "failed"


def job_rows(entries: list[LedgerEntry]) -> list[JobRow]:
    """Fold reserve / settle / refund rows into one row per job, oldest first."""
    rows: dict[str, JobRow] = {}
    for e in entries:
        rid = e.reservation_id
        if rid is None:
            continue
        if e.kind == "reserve":
            rows[rid] = JobRow(id=rid, actor=e.actor_key, day=e.day, model=e.model or "?",
                               size=e.size or "", credits=e.credits - e.bonus - e.paid, usd=e.usd,
                               ts=e.ts or _EPOCH)
        elif e.kind in ("settle", "refund") and rid in rows:
            old = rows[rid]
            rows[rid] = JobRow(old.id, old.actor, old.day, old.model, old.size, old.credits,
                               old.usd, old.ts, _outcome(e.kind, e.note or ""), e.note or "")
    return list(rows.values())


def last_days(today: str, count: int = DAYS) -> list[str]:
    """``count`` day keys ending with ``today``, oldest first."""
    end = date.fromisoformat(today)
    return [(end - timedelta(days=i)).isoformat() for i in range(count - 1, -1, -1)]


@dataclass(frozen=True, slots=True)
class Total:
    """Images, credits and USD of one group (a model, a platform, a user)."""

    name: str
    images: int = 0
    credits: int = 0
    usd: float = 0.0
    last: datetime | None = None


@dataclass(frozen=True, slots=True)
class Rates:
    """Finished jobs by outcome."""

    finished: int = 0
    refused: int = 0
    failed: int = 0
    cancelled: int = 0

    def percent(self, part: int) -> float:
        """``part`` as a percentage of finished jobs."""
        return 100.0 * part / self.finished if self.finished else 0.0


@dataclass(slots=True)
class Overview:
    """The operator's figures for the last ``DAYS`` days."""

    days: list[str]
    today: str
    series: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    by_model: list[Total] = field(default_factory=list)
    by_platform: list[Total] = field(default_factory=list)
    top_users: list[Total] = field(default_factory=list)
    today_total: Total = Total("today")
    today_users: int = 0
    rates: Rates = Rates()
    rates_today: Rates = Rates()


def _totals(rows: list[JobRow], key: str) -> list[Total]:
    acc: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    last: dict[str, datetime] = {}
    for r in rows:
        name = getattr(r, key)
        acc[name][0] += 1
        acc[name][1] += r.credits
        acc[name][2] += r.usd
        last[name] = max(last.get(name, r.ts), r.ts)
    out = [Total(n, int(v[0]), int(v[1]), round(v[2], 4), last[n]) for n, v in acc.items()]
    return sorted(out, key=lambda t: (-t.usd, -t.credits, t.name))


def _rates(rows: list[JobRow]) -> Rates:
    done = [r for r in rows if r.outcome != "running"]
    return Rates(len(done), sum(r.outcome == "refused" for r in done),
                 sum(r.outcome == "failed" for r in done),
                 sum(r.outcome == "cancelled" for r in done))


def overview(rows: list[JobRow], today: str, top: int = 10) -> Overview:
    """Series per day (USD and credits, by model and by platform), totals, top users, rates."""
    days = last_days(today)
    index = {d: i for i, d in enumerate(days)}
    recent = [r for r in rows if r.day in index]
    spent = [r for r in recent if r.outcome == "ok"]
    series: dict[str, dict[str, list[float]]] = {}
    for metric in ("usd", "credits"):
        for by in ("model", "platform"):
            table: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(days))
            for r in spent:
                table[getattr(r, by)][index[r.day]] += getattr(r, metric)
            series[f"{metric}_{by}"] = dict(sorted(table.items()))
    todays = [r for r in spent if r.day == today]
    return Overview(
        days=days, today=today, series=series, by_model=_totals(spent, "model"),
        by_platform=_totals(spent, "platform"), top_users=_totals(spent, "actor")[:top],
        today_total=Total("today", len(todays), sum(r.credits for r in todays),
                          round(sum(r.usd for r in todays), 4)),
        today_users=len({r.actor for r in todays}), rates=_rates(recent),
        rates_today=_rates([r for r in recent if r.day == today]))


@dataclass(frozen=True, slots=True)
class GalleryItem:
    """A recent generation: a delivered turn (with images) or a failed job (without)."""

    when: datetime
    actor: str
    model: str
    size: str
    credits: int
    usd: float
    outcome: Outcome
    prompt: str = ""
    turn_id: str | None = None
    images: int = 0
    aspect: str = "1:1"
    kind: str = "imagine"
    note: str = ""


@dataclass(frozen=True, slots=True)
class Standing:
    """A user's ban state and bonus credits (beside their row among the top users)."""

    banned: bool = False
    bonus: int = 0


@dataclass(frozen=True, slots=True)
class OperatorReport:
    """Everything the operator's dashboard shows, read at one moment."""

    overview: Overview
    gallery: list[GalleryItem]
    standing: dict[str, Standing]


class Reports:
    """Read-only reports over the ledger, the turns and the users."""

    def __init__(self, *, store: Store, quotas: Quotas, catalog: Mapping[str, ModelSpec]) -> None:
        self._store = store
        self._quotas = quotas
        self._catalog = catalog

    async def jobs(self, days: int = DAYS) -> list[JobRow]:
        """One row per job of the last ``days`` days (a day more, for time zones), oldest first."""
        since = (self._quotas.now_local().date() - timedelta(days=days + 1)).isoformat()
        return job_rows(await self._store.ledger_since(since))

    async def gallery(self, rows: list[JobRow], limit: int = 12) -> list[GalleryItem]:
        """The latest generations across every user, newest first (refused and failed too)."""
        items: list[GalleryItem] = []
        for t in await self._store.recent_turns(limit):
            spec = self._catalog.get(t.model)
            usd = spec.price_usd(t.size or "1K") if spec else 0.0
            items.append(GalleryItem(t.created_at, t.actor_key, t.model, t.size or "", t.credits,
                                     usd, "ok", t.prompt, t.id, len(t.output_hashes),
                                     t.aspect or "1:1", t.kind))
        items += [GalleryItem(r.ts, r.actor, r.model, r.size, r.credits, r.usd, r.outcome,
                              note=r.note) for r in rows if r.outcome in ("refused", "failed")]
        return sorted(items, key=lambda i: i.when, reverse=True)[:limit]

    async def standing(self, key: str) -> Standing:
        """Whether ``key`` (``platform:id``) is banned, and their bonus credits."""
        platform, _, uid = key.partition(":")
        record = await self._store.get_user(key)
        return Standing(record.banned, (await self._quotas.usage(Actor(platform, uid))).bonus)

    async def operator(self, *, top: int = 10, gallery: int = 12) -> OperatorReport:
        """The dashboard's figures, top users with their standing, and the recent gallery."""
        rows = await self.jobs()
        ov = overview(rows, self._quotas.today(), top)
        standing = {user.name: await self.standing(user.name) for user in ov.top_users}
        return OperatorReport(ov, await self.gallery(rows, gallery), standing)
