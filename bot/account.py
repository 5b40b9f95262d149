"""Per-user preferences and the admin operations (grant, ban, limits, stats)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.catalog import Lineup, ModelSpec, normalize_size
from bot.config import Settings
from bot.domain import Actor, UserSettings
from bot.errors import InvalidOption, NotAllowed
from bot.jobs import Scheduler
from bot.messages import LOCALES
from bot.present import Presenter
from bot.prompts import MAX_N
from bot.quotas import Quotas
from bot.storage.base import Store
from bot.styles import Styles

_FIELDS = ("model", "size", "aspect", "locale", "search", "n", "style")


class Preferences:
    """A user's saved defaults: model, size, aspect, language."""

    def __init__(self, settings: Settings, store: Store, lineup: Lineup | None = None) -> None:
        self._settings = settings
        self._store = store
        self._lineup = lineup or Lineup(settings.catalog())
        self._catalog = self._lineup.models
        self.styles = Styles.of(settings.styles)

    def _spec(self, name: str | None) -> ModelSpec:
        """A saved or default model today (a retired name means its successor)."""
        spec = self._lineup.find(name, where="saved /settings") if name else None
        return spec or self._catalog[self._settings.bot.default_model]

    async def get(self, actor: Actor) -> UserSettings:
        """The actor's saved defaults."""
        return (await self._store.get_user(actor.key)).settings

    def choices(self, name: str, model: str | None = None) -> list[str]:
        """Allowed values of a setting (sizes and aspects of ``model`` or the default model)."""
        if name == "locale":
            return list(LOCALES)
        if name == "model":
            return list(self._catalog)
        if name == "n":
            return [str(i) for i in range(1, MAX_N + 1)]
        if name == "style":
            return self.styles.names()
        spec = self._spec(model)
        if name == "search":
            return ["on", "off"] if spec.search else ["off"]
        return list(spec.sizes if name == "size" else spec.aspects)

    async def update(self, actor: Actor, name: str, value: str | None) -> UserSettings:
        """Set one default (None resets it); InvalidOption when the value is not offered."""
        if name not in _FIELDS:
            raise InvalidOption("setting", name, list(_FIELDS))
        current = await self.get(actor)
        if name == "model" and value is not None and value not in self._catalog:
            found = self._lineup.find(value, where="/settings")
            value = found.name if found else value
        if value is not None:
            if name == "size":
                value = normalize_size(value)
            allowed = self.choices(name, current.model)
            if value not in allowed:
                raise InvalidOption(name, value, allowed)
        fields: dict[str, Any] = {name: int(value) if name == "n" and value else value}
        updated = replace(current, **fields)
        if name == "model" and value is not None:
            spec = self._spec(value)
            if updated.size and updated.size not in spec.sizes:
                updated = replace(updated, size=None)
            if updated.aspect and updated.aspect not in spec.aspects:
                updated = replace(updated, aspect=None)
        await self._store.save_user_settings(actor.key, updated)
        return updated


class AdminOps:
    """Operator actions; each checks that the actor is an admin."""

    def __init__(self, settings: Settings, store: Store, quotas: Quotas, scheduler: Scheduler,
                 presenter: Presenter) -> None:
        self._settings = settings
        self._store = store
        self._quotas = quotas
        self._scheduler = scheduler
        self._presenter = presenter

    def _check(self, actor: Actor) -> None:
        if not (actor.is_admin or self._settings.is_admin(actor.key)):
            raise NotAllowed()

    async def grant(self, actor: Actor, target: str, credits: int, locale: str) -> str:
        """Give ``target`` bonus credits."""
        self._check(actor)
        await self._quotas.grant(target, credits, by=actor.key)
        platform, _, user_id = target.partition(":")
        bonus = (await self._quotas.usage(Actor(platform, user_id))).bonus
        return self._presenter.t(locale, "admin.granted", credits=credits, user=target,
                                 bonus=bonus)

    async def ban(self, actor: Actor, target: str, banned: bool, locale: str) -> str:
        """Block or unblock ``target``."""
        self._check(actor)
        await self._store.set_user_flags(target, banned=banned, ban_notified=False)
        return self._presenter.t(locale, "admin.banned" if banned else "admin.unbanned",
                                 user=target)

    async def set_limits(self, actor: Actor, target: str, daily: int | None, monthly: int | None,
                         locale: str) -> str:
        """Override ``target``'s daily and monthly allowance."""
        self._check(actor)
        await self._store.set_user_flags(target, daily_limit=daily, monthly_limit=monthly)
        record = await self._store.get_user(target)
        quota = self._settings.quota
        return self._presenter.t(
            locale, "admin.limit_set", user=target,
            daily=record.daily_limit if record.daily_limit is not None else quota.user_daily_credits,
            monthly=(record.monthly_limit if record.monthly_limit is not None
                     else quota.user_monthly_credits))

    async def stats(self, actor: Actor, locale: str) -> str:
        """Today's figures and the queue."""
        self._check(actor)
        figures = await self._store.stats(self._quotas.today())
        snap = self._scheduler.snapshot()
        return self._presenter.t(locale, "admin.stats", jobs=int(figures["jobs"]),
                                 credits=int(figures["credits"]), usd=f"{figures['usd']:.2f}",
                                 users=int(figures["users"]), queued=snap.queued,
                                 running=snap.running)
