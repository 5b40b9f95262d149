"""The one port adapters use: jobs, delivery, options, words, account and reports.

An adapter imports nothing else from ``bot`` (ruff's banned-api rule in ``adapters/ruff.toml``
holds the line). Every user-facing call raises :class:`BotError`; an adapter has one guard that
shows :meth:`BotApi.error_reply`. Results are delivered through :meth:`BotApi.delivery`, which
fits the images to the adapter's :class:`Capabilities` and settles or refunds by itself. The
map of the whole path is docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from bot.account import AdminOps, Preferences
from bot.api_queries import QueriesApi
from bot.api_words import WordsApi
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
    Handoff,
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
    BotError,
    Cancelled,
    ConfigError,
    EmptyPrompt,
    HandedOver,
    InputTooLarge,
    InternalError,
    InvalidOption,
    NotAllowed,
    NotFound,
    NotOwner,
    StoreUnavailable,
    TooManyWaiting,
    UnsupportedImage,
)
from bot.gallery import Gallery
from bot.groups import KEYS as GROUP_KEYS
from bot.groups import GroupSettings
from bot.handoff import Ticket
from bot.images import thumbnail
from bot.jobs import SchedulerStats
from bot.leader import Leadership
from bot.links import image_link
from bot.messages import Messages, normalize_locale
from bot.present import Presenter, excerpt
from bot.prompts import parse_flags
from bot.quotas import MAX_GRANT, Quotas, user_key
from bot.reports import GalleryItem, OperatorReport, Overview, Rates, Reports, Standing, Total
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
# Queued jobs another process finishes when this one stops (bot/handoff.py, many processes).
__all__ += ["HandedOver", "Handoff", "Ticket"]
# Creating (issue 16): /history pages, /describe answers.
__all__ += ["Described", "HistoryItem", "HistoryPage"]
# Selling packs ([shop]): what platforms report (Charge), what they show (Pack, Receipt, Payment).
__all__ += ["Charge", "Pack", "Payment", "Receipt", "RefundFailed", "RevenueDay", "Shop"]

ProgressCallback = Callable[[Progress], Awaitable[None]]


class BotApi(WordsApi, QueriesApi):
    """All of the core an adapter may call (built once in :func:`bot.bootstrap.build_core`).

    Jobs, delivery and turns are here; words (:mod:`bot.api_words`) and settings, groups,
    usage and reports (:mod:`bot.api_queries`) come from the two parts it is made of.
    """

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

    # ----- identity and jobs -------------------------------------------------------------------

    def is_admin(self, actor: Actor) -> bool:
        """Admins by config, or as the adapter vouched."""
        return self._service.is_admin(actor)

    async def imagine(self, request: ImageRequest, progress: ProgressCallback | None = None,
                      handoff: Handoff | None = None) -> Reply:
        """A new image; the result must then go through :meth:`delivery`.

        ``handoff``: where the result goes should this process stop while the job waits (another
        process then makes it and delivers it there; see :meth:`handed_over`).
        """
        return await self._service.imagine(request, progress, handoff)

    async def edit(self, request: ImageRequest, reply_to: MessageRef | None = None,
                   progress: ProgressCallback | None = None,
                   handoff: Handoff | None = None) -> Reply:
        """Continue a result (by turn id or the message replied to) or edit attached images."""
        return await self._service.edit(request, reply_to, progress, handoff)

    async def act(self, actor: Actor, chat: ChatRef, action: Action,
                  progress: ProgressCallback | None = None,
                  handoff: Handoff | None = None) -> Reply:
        """A button: reroll, upscale or variations of a turn the actor may use."""
        return await self._service.act(actor, chat, action, progress, handoff)

    async def handed_over(self, platform: str) -> list[tuple[Ticket, Actor]]:
        """Jobs for ``platform`` a stopped process had queued, now ours to run (:meth:`resume`)."""
        return await self._service.handoffs.claim(platform)

    @property
    def delivery_patience(self) -> float:
        """Seconds a result the platform holds back keeps being offered (a 429, a restart)."""
        return self.settings.limits.delivery_retry_hours * 3600

    @property
    def handover_every(self) -> float:
        """How often to look for handed-over jobs: a third of a lease, as the sweep does."""
        return self.settings.store.lease_seconds / 3

    async def resume(self, ticket: Ticket, progress: ProgressCallback | None = None) -> Reply:
        """Make a handed-over job (a Reply for :meth:`delivery`, as :meth:`imagine` gives)."""
        return await self._service.resume(ticket, progress)

    async def describe(self, actor: Actor, chat: ChatRef, image: ImageData) -> Described:
        """/describe: 2-4 prompts for ``image``, charged ``[describe] credits`` (refunded on failure)."""
        return await self._service._guarded(actor, self._describer.describe(actor, chat, image))

    async def suggestion(self, actor: Actor, sid: str, index: int) -> str:
        """Prompt ``index`` (from 1) of a /describe answer, for the one who asked (or an admin)."""
        return await self._describer.suggestion(actor, sid, index, admin=self.is_admin(actor))

    async def history(self, actor: Actor, page: int = 1) -> HistoryPage:
        """/history: page ``page`` of the actor's results, newest first, with their buttons."""
        return await self._gallery.page(actor, page, await self.locale_for(actor))

    def delivery(self, reply: Reply, caps: Capabilities,
                 parked: bool = False) -> AbstractAsyncContextManager[Delivery]:
        """``async with api.delivery(reply, caps) as out``: upload ``out.items``, then ``out.sent``.

        ``parked``: ``reply`` came from :meth:`redeliver` and stays in the outbox until it is out.
        """
        return self._service.delivery(reply, caps, parked)

    async def parked(self, platform: str) -> list[Parked]:
        """Results for ``platform`` a stopped process had parked (bot/outbox.py), now ours."""
        return await self._service.deliveries.claim(platform)

    async def redeliver(self, parked: Parked) -> Reply | None:
        """A claimed result with its images, for :meth:`delivery`; None: refunded (too old, gone)."""
        return await self._service.deliveries.reload(parked, self.delivery_patience)

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
