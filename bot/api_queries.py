"""The port's queries: settings and models, group policies, usage, and the operator's reports.

Part of :class:`bot.api.BotApi` (adapters import it from there, never from here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.account import Preferences
from bot.catalog import ModelSpec
from bot.config import Settings
from bot.domain import Actor, ChatRef, Options, Turn, Usage, UserSettings
from bot.errors import BotError, NotFound, QuotaExceeded, TooManyReferences
from bot.groups import GroupSettings
from bot.providers.routes import ROUTES
from bot.quotas import Quotas
from bot.service import ImagineService
from bot.storage.base import LedgerEntry, UserRecord


class QueriesApi:
    """Reads (and the few account changes) an adapter offers; mixed into :class:`bot.api.BotApi`."""

    settings: Settings
    prefs: Preferences
    _service: ImagineService
    _quotas: Quotas

    # ----- options -----------------------------------------------------------------------------

    async def shown_settings(self, actor: Actor) -> UserSettings:
        """The actor's defaults as /settings shows them: saved, else configured (language as saved)."""
        saved, bot = await self.prefs.get(actor), self.settings.bot
        return UserSettings(model=saved.model or bot.default_model,
                            size=saved.size or bot.default_size,
                            aspect=saved.aspect or bot.default_aspect, locale=saved.locale,
                            search=saved.search or "off", n=saved.n or 1, style=saved.style)

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        """Today's models by name."""
        return self._service.catalog

    def model(self, name: str) -> ModelSpec:
        """A model by name or wire id (a retired one means its successor); InvalidOption."""
        return self._service.model(name)

    def route_label(self) -> str | None:
        """The default model's route as shown to people (None for the demo route)."""
        spec = self.models[self.settings.bot.default_model]
        route = ROUTES[self.settings.provider_table()[spec.provider].api]
        return None if route.wire == "demo" else route.label

    async def precheck(self, actor: Actor, chat: ChatRef, options: Options, references: int,
                       parent_id: str | None) -> None:
        """Raise the BotError this request would meet now (references, credits), if any."""
        parent = None
        if parent_id:
            try:
                parent = await self._service.owned(actor, parent_id)
            except BotError:
                parent = None  # the job itself says why; nothing of another's turn is read here
        spec, size, _ = self._service.choices.resolve(
            await self.prefs.get(actor), options, model=parent.model if parent else None,
            kept_size=parent.size if parent else None)
        count = references + (len(parent.output_hashes) if parent else 0)
        if count > spec.max_references:
            raise TooManyReferences(count, spec.max_references, spec.name)
        usage = await self.usage(actor, chat)
        cost = self._quotas.price(spec, size).credits
        if not usage.exempt and usage.credits_left < cost:
            windows = [w for w in usage.windows if w.name != "global_daily_usd"]
            tight = min(windows, key=lambda w: w.left, default=None)
            raise QuotaExceeded(tight.name if tight else "user_daily", usage.credits_left, cost,
                                tight.resets_at if tight else None)

    # ----- groups ------------------------------------------------------------------------------

    async def group(self, chat: ChatRef) -> GroupSettings:
        """A group's policy (/config)."""
        return await self._service.groups.get(chat)

    async def configure_group(self, actor: Actor, chat: ChatRef, args: Sequence[str], *,
                              group_admin: bool) -> GroupSettings:
        """Change a group's policy from /config arguments; BotError when refused."""
        return await self._service.groups.configure(actor, chat, list(args),
                                                    group_admin=group_admin)

    async def group_policies(self) -> list[tuple[str, GroupSettings, str | None]]:
        """Every configured group: key, settings, who changed them last."""
        return [(key, GroupSettings.loads(raw), by)
                for key, raw, by in await self._service.store.all_group_settings()]

    def routing_view(self) -> dict[str, Any]:
        """Routes, circuits and recent failovers for the operator."""
        return {**self._service.routing.view(), "recent": list(self._service.routing.recent)}

    # ----- account and reports -----------------------------------------------------------------

    async def usage(self, actor: Actor, chat: ChatRef | None = None) -> Usage:
        """What the actor may still spend."""
        return await self._service.usage(actor, chat)

    async def quota_text(self, actor: Actor, chat: ChatRef | None = None) -> str:
        """The /quota answer."""
        return await self._service.quota_text(actor, chat)

    async def forget(self, actor: Actor) -> int:
        """Erase the actor's turns and images; cancel their queued jobs."""
        return await self._service.forget(actor)

    async def user(self, key: str) -> UserRecord:
        """A user's row (settings, ban, limits)."""
        return await self._service.store.get_user(key)

    async def turn(self, turn_id: str) -> Turn:
        """A turn by id for the operator; NotFound."""
        found = await self._service.store.get_turn(turn_id)
        if found is None:
            raise NotFound()
        return found

    async def recent_turns(self, limit: int, actor_key: str | None = None) -> list[Turn]:
        """The newest turns (of one user, or everyone's for the operator)."""
        return await self._service.store.recent_turns(limit, actor_key)

    async def ledger_since(self, day: str) -> list[LedgerEntry]:
        """Ledger rows from ``day`` on (reports)."""
        return await self._service.store.ledger_since(day)

    async def ledger(self, actor_key: str | None = None) -> list[LedgerEntry]:
        """Every ledger row, oldest first, or one user's (``imagine-bot usage``)."""
        return await self._service.store.ledger(actor_key)

    def today(self) -> str:
        """The quota day (configured time zone)."""
        return self._quotas.today()

    def now_local(self) -> datetime:
        """Now in the configured time zone."""
        return self._quotas.now_local()

    def zone(self) -> ZoneInfo:
        """The configured time zone."""
        return self.settings.zone()

    def set_daily_allowance(self, key_prefix: str, credits: int) -> None:
        """A different daily allowance for actors whose key starts with ``key_prefix``."""
        self._quotas.set_daily_allowance(key_prefix, credits)
