"""The one port adapters use: jobs, delivery, options, words, account and reports.

An adapter imports nothing else from ``bot`` (ruff's banned-api rule in ``adapters/ruff.toml``
holds the line). Every user-facing call raises :class:`BotError`; an adapter has one guard that
shows :meth:`BotApi.error_reply`. Results are delivered through :meth:`BotApi.delivery`, which
fits the images to the adapter's :class:`Capabilities` and settles or refunds by itself. The
map of the whole path is docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.account import AdminOps, Preferences
from bot.catalog import SIZE_ORDER, ModelSpec
from bot.config import Settings
from bot.config_sections import TelegramSection
from bot.delivery import Delivery, Fitted, Parked
from bot.describe import Describer
from bot.domain import (
    Action,
    Actor,
    Budget,
    Capabilities,
    ChatRef,
    Described,
    HistoryItem,
    HistoryPage,
    ImageData,
    ImageLink,
    ImageRequest,
    MessageRef,
    Options,
    Progress,
    Reply,
    Turn,
    Usage,
    UserSettings,
)
from bot.errors import (
    BadGrant,
    Banned,
    BotError,
    Cancelled,
    ConfigError,
    EmptyPrompt,
    InputTooLarge,
    InternalError,
    InvalidOption,
    NotAllowed,
    NotFound,
    NotOwner,
    QuotaExceeded,
    StoreUnavailable,
    TooManyReferences,
    TooManyWaiting,
    UnsupportedImage,
)
from bot.gallery import Gallery
from bot.groups import KEYS as GROUP_KEYS
from bot.groups import GroupSettings, describe
from bot.images import thumbnail
from bot.jobs import SchedulerStats
from bot.leader import Leadership
from bot.links import image_link
from bot.messages import Messages, normalize_locale
from bot.present import Presenter, excerpt, progress_text
from bot.prompts import parse_flags
from bot.providers.routes import ROUTES
from bot.quotas import MAX_GRANT, Quotas, user_key
from bot.reports import GalleryItem, OperatorReport, Overview, Rates, Reports, Standing, Total
from bot.results import button_label
from bot.revenue import RevenueDay
from bot.service import ImagineService
from bot.shop import Charge, Pack, Receipt, RefundFailed, Shop
from bot.storage.base import LedgerEntry, Payment, UserRecord

__all__ = ["Action", "Actor", "BotApi", "BotError", "Budget", "Capabilities", "ChatRef",
           "Delivery", "Fitted", "GroupSettings", "ImageData", "ImageRequest",
           "LedgerEntry", "MessageRef", "ModelSpec", "Options", "Parked", "Progress", "ProgressCallback",
           "Reply", "SchedulerStats", "Settings", "StoreUnavailable", "Turn", "Usage",
           "UserRecord", "UserSettings"]
# The errors adapters raise themselves (before a request reaches the core), and flag parsing.
__all__ += ["ConfigError", "EmptyPrompt", "InputTooLarge", "InternalError", "InvalidOption",
            "NotAllowed", "NotFound", "NotOwner", "UnsupportedImage", "parse_flags"]
# Orders and names an adapter lists in its own menus: sizes smallest first, /config settings.
__all__ += ["GROUP_KEYS", "SIZE_ORDER"]
# The web console: refusals it tells before a job, text helpers, the operator's reports.
__all__ += ["Cancelled", "Reports", "TooManyWaiting", "excerpt", "normalize_locale"]
__all__ += ["GalleryItem", "OperatorReport", "Overview", "Rates", "Standing", "Total"]
# A grant checked before anything is opened (the CLI), against the limit every grant path shares.
__all__ += ["MAX_GRANT", "BadGrant", "user_key"]

# A platform's own settings section, for the adapter's runtime to hold typed.
__all__ += ["TelegramSection"]
# A reference an upstream may fetch by URL (bot/links.py decides which may).
__all__ += ["ImageLink"]
# Creating (issue 16): /history pages, /describe answers.
__all__ += ["Described", "HistoryItem", "HistoryPage"]
# Selling packs ([shop]): what platforms report (Charge), what they show (Pack, Receipt, Payment).
__all__ += ["Charge", "Pack", "Payment", "Receipt", "RefundFailed", "RevenueDay", "Shop"]

ProgressCallback = Callable[[Progress], Awaitable[None]]


class BotApi:
    """All of the core an adapter may call (built once in :func:`bot.bootstrap.build_core`)."""

    def __init__(self, *, settings: Settings, service: ImagineService, prefs: Preferences,
                 admin: AdminOps, messages: Messages, presenter: Presenter,
                 quotas: Quotas, shop: Shop) -> None:
        self.settings = settings
        self.prefs = prefs
        self.admin = admin
        self._service = service
        self._messages = messages
        self._presenter = presenter
        self._quotas = quotas
        #: Credit packs for sale: payments are recorded, credited once, refunded (bot/shop.py).
        self.shop = shop
        #: Roles one process at a time holds, e.g. registering the Telegram webhook (bot/leader.py).
        self.leader = Leadership()
        #: The operator's figures (ledger folds, gallery, top users' standing).
        self.reports = Reports(store=service.store, quotas=quotas, catalog=service.catalog)
        self._describer = Describer(settings=settings, store=service.store, quotas=quotas,
                                    providers=service.providers, scheduler=service.scheduler,
                                    presenter=presenter, prepare=service._prepare)
        self._gallery = Gallery(settings, service.store, service.choices, presenter)

    # ----- words -------------------------------------------------------------------------------

    def t(self, locale: str | None, key: str, /, **params: Any) -> str:
        """A message from the catalogs in ``locale`` (English when it lacks the key)."""
        return self._messages.t(locale, key, **params)

    def has_text(self, locale: str, key: str) -> bool:
        """Whether ``locale``'s own catalog has ``key`` (t() would otherwise fall back to English)."""
        return key in self._messages.keys(locale)

    def error_text(self, locale: str, err: BotError) -> str:
        """``err`` as a sentence for a user."""
        return self._presenter.error(locale, err)

    async def error_reply(self, actor: Actor, err: BotError) -> Reply:
        """What to show ``actor`` for ``err`` (empty text: say nothing, e.g. a ban told before)."""
        locale = await self.locale_for(actor)
        if isinstance(err, Banned):
            store = self._service.store
            if (await store.get_user(actor.key)).ban_notified:
                return Reply(text="", error=err.key, locale=locale)
            await store.set_user_flags(actor.key, ban_notified=True)
        return Reply(text=self.error_text(locale, err), error=err.key, locale=locale)

    def button_label(self, locale: str, action: Action) -> str:
        """A result button's label, the same on every platform (U2 · 4K (24), V3, Reroll all)."""
        return button_label(self._messages.t, locale, action)

    def progress_text(self, locale: str, event: Progress, running: float) -> str | None:
        """A job's status line: its queue place, or how long the model has worked."""
        return progress_text(self._messages, locale, event.stage, event.position, running)

    async def locale_for(self, actor: Actor) -> str:
        """The actor's language: saved, else the platform's, else the configured default."""
        return await self._service.locale_for(actor)

    def is_admin(self, actor: Actor) -> bool:
        """Admins by config, or as the adapter vouched."""
        return self._service.is_admin(actor)

    # ----- jobs --------------------------------------------------------------------------------

    async def imagine(self, request: ImageRequest,
                      progress: ProgressCallback | None = None) -> Reply:
        """A new image; the result must then go through :meth:`delivery`."""
        return await self._service.imagine(request, progress)

    async def edit(self, request: ImageRequest, reply_to: MessageRef | None = None,
                   progress: ProgressCallback | None = None) -> Reply:
        """Continue a result (by turn id or the message replied to) or edit attached images."""
        return await self._service.edit(request, reply_to, progress)

    async def act(self, actor: Actor, chat: ChatRef, action: Action,
                  progress: ProgressCallback | None = None) -> Reply:
        """A button: reroll, upscale or variations of a turn the actor may use."""
        return await self._service.act(actor, chat, action, progress)

    async def describe(self, actor: Actor, chat: ChatRef, image: ImageData) -> Described:
        """/describe: 2-4 prompts for ``image``, charged ``[describe] credits`` (refunded on failure)."""
        return await self._service._guarded(actor, self._describer.describe(actor, chat, image))

    async def suggestion(self, actor: Actor, sid: str, index: int) -> str:
        """Prompt ``index`` (from 1) of a /describe answer, for the one who asked (or an admin)."""
        return await self._describer.suggestion(actor, sid, index, admin=self.is_admin(actor))

    async def history(self, actor: Actor, page: int = 1) -> HistoryPage:
        """/history: page ``page`` of the actor's results, newest first, with their buttons."""
        return await self._gallery.page(actor, page, await self.locale_for(actor))

    def help_text(self, locale: str) -> str:
        """/help: commands, buttons and every inline flag, the style presets named."""
        return self.t(locale, "help.text", styles=", ".join(self.style_names()))

    def style_names(self) -> list[str]:
        """Style presets (``--style NAME``), built-in and configured."""
        return self._service.styles.names()

    def style_label(self, locale: str, name: str) -> str:
        """A preset's name as people see it."""
        return self._service.styles.label(self._messages.t, locale, name)

    def delivery(self, reply: Reply, caps: Capabilities) -> AbstractAsyncContextManager[Delivery]:
        """``async with api.delivery(reply, caps) as out``: upload ``out.items``, then ``out.sent``."""
        return self._service.delivery(reply, caps)

    async def parked(self, platform: str) -> list[Parked]:
        """Results for ``platform`` a stopped process had parked (bot/outbox.py), now ours."""
        return await self._service.deliveries.claim(platform)

    async def redeliver(self, parked: Parked) -> Reply | None:
        """A claimed result with its images, for :meth:`delivery`; None: refunded (too old, gone)."""
        return await self._service.deliveries.reload(parked, self.settings.limits.delivery_retry_hours)

    async def owned(self, actor: Actor, turn_id: str) -> Turn:
        """The turn when ``actor`` may use it (a client-supplied id); NotFound / NotOwner."""
        return await self._service.owned(actor, turn_id)

    async def turn_for(self, message: MessageRef) -> Turn | None:
        """The turn a platform message shows, if any."""
        return await self._service.turn_for(message)

    async def delete(self, actor: Actor, turn_id: str) -> list[MessageRef]:
        """Delete a turn (its owner or an admin); returns the messages to remove."""
        return await self._service.delete(actor, turn_id)

    def image_link(self, url: str, mime: str, size: int | None,
                   name: str = "") -> ImageLink | None:
        """``url`` as a reference the upstream may fetch itself, or None: download it.

        The core decides (bot/links.py): https Discord CDN URLs of a declared image type and
        size within ``[limits] max_input_mb`` (over it: InputTooLarge, as a download would be).
        """
        return image_link(url, mime, size, name,
                          max_bytes=int(self.settings.limits.max_input_mb * 1_000_000))

    async def thumbnail(self, image: ImageData, side: int) -> ImageData:
        """A JPEG preview of ``image`` whose long side is at most ``side`` pixels."""
        return await thumbnail(image, side)

    async def result_images(self, actor: Actor, turn_id: str) -> tuple[ImageData, ...]:
        """A turn's images, for its owner (or an admin)."""
        await self.owned(actor, turn_id)
        return await self._service.result_images(turn_id)

    def actions_for(self, turn: Turn) -> tuple[Action, ...]:
        """The buttons under a result."""
        return self._service.actions_for(turn)

    @property
    def accepting(self) -> bool:
        """False once shutdown began: new work is refused."""
        return self._service.scheduler.accepting

    def snapshot(self) -> SchedulerStats:
        """The queue right now."""
        return self._service.scheduler.snapshot()

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
                parent = await self.owned(actor, parent_id)
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

    def group_text(self, locale: str, group: GroupSettings) -> str:
        """The /config answer: every setting of ``group``, translated."""
        return describe(self.t, locale, group)

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
