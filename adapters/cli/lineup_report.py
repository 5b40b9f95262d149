"""What ``models`` and ``check`` tell an operator: the catalog per route, and what routes serve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.api import ModelSpec, Settings
from bot.catalog import RETIRED_IDS, bare_id
from bot.errors import (
    BotError,
    JobTimeout,
    ModelUnavailable,
    UpstreamBusy,
    UpstreamConfig,
    UpstreamNoCredit,
)
from bot.providers.routes import ROUTES


def live_routes(settings: Settings) -> list[str]:
    """One line per provider: its name, route, endpoint and where its key comes from."""
    lines = []
    for name, section in settings.provider_table().items():
        route = ROUTES[section.api]
        how = (" (from the exported key; no [providers] in the config)"
               if settings.auto_route == section.api and not settings.providers else "")
        key = f", key from {section.key_env}" if section.key_env else ""
        where = f" at {section.url}" if section.url else ""
        lines.append(f"{name}: {route.label} (api = {section.api!r}){where}{key}{how}")
    return lines


def operator_reason(err: BotError) -> str:
    """A probe failure in an operator's words: network, key, credit, model, rate limit."""
    detail = err.detail or err.key
    if isinstance(err, ModelUnavailable):
        return f"not found: an unknown model, or a wrong base_url ({detail})"
    if isinstance(err, UpstreamNoCredit):
        return f"no credit on this account ({detail})"
    if isinstance(err, UpstreamConfig):
        return f"bad key or no access ({detail})"
    if isinstance(err, JobTimeout):
        return "network error (no answer within 20 s)"
    if isinstance(err, UpstreamBusy):
        if "HTTP" in detail:
            return f"rate limited or overloaded ({detail})"
        return f"network error ({detail})"
    return f"unexpected answer ({detail})"


@dataclass(frozen=True, slots=True)
class Row:
    """One model of the catalog, as ``models`` prints it."""

    name: str
    ids: str
    sizes: str
    aspects: str
    refs: str
    price: str
    status: str


def catalog_rows(settings: Settings, listed: Mapping[str, Sequence[str] | None] | None = None
                 ) -> list[Row]:
    """The catalog with each model's id on its provider's route; ``listed`` adds availability."""
    rows = []
    for spec in settings.catalog().values():
        status = spec.status
        if listed is not None:
            status = availability(spec, listed.get(spec.provider))
        prices = " / ".join(f"{spec.prices[s]:g}" for s in spec.sizes if s in spec.prices)
        rows.append(Row(spec.name, f"{spec.provider}: {spec.id}", ", ".join(spec.sizes),
                        f"{len(spec.aspects)} (to {spec.aspects[-1]})", str(spec.max_references),
                        f"${prices}" if prices else "-", status))
    return rows


def availability(spec: ModelSpec, listed: Sequence[str] | None) -> str:
    """available / missing / retired for ``spec`` against a route's model list (None: no list)."""
    if bare_id(spec.id) in RETIRED_IDS:
        return "retired: " + RETIRED_IDS[bare_id(spec.id)].why
    if listed is None:
        return "not checked"
    names = {bare_id(m) for m in listed} | set(listed)
    return "available" if spec.id in names or bare_id(spec.id) in names else "missing"


def table(rows: Sequence[Row]) -> str:
    """The rows as an aligned plain-text table with a header."""
    header = Row("name", "id (provider: id)", "sizes", "aspects", "refs", "USD/image", "status")
    cells = [[r.name, r.ids, r.sizes, r.aspects, r.refs, r.price, r.status] for r in [header, *rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(7)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in cells)
