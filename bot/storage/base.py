"""The ``Store`` port: persistence the core needs, and the records that cross it."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from bot.domain import MessageRef, Turn, UserSettings
from bot.storage.blob_port import BlobIndex
from bot.storage.blob_port import BlobInfo as BlobInfo  # re-exported: its home before
from bot.storage.gallery_port import GalleryStore
from bot.storage.handoff_port import HandoffStore
from bot.storage.standing import Standing

LedgerKind = Literal["reserve", "settle", "refund", "grant", "purchase", "purchase_refund",
                     "expire"]
ReservationState = Literal["held", "settled", "refunded"]
#: received (recorded, not yet credited) -> credited -> refunded; or received -> refunded.
PaymentState = Literal["received", "credited", "refunded"]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One append-only ledger row."""

    kind: LedgerKind
    actor_key: str
    day: str
    month: str
    credits: int = 0
    bonus: int = 0
    usd: float = 0.0
    reservation_id: str | None = None
    chat_key: str | None = None
    model: str | None = None
    size: str | None = None
    note: str | None = None
    ts: datetime | None = None
    #: Purchased credits: +bought, -spent, +refunded with a job, -taken back or expired.
    paid: int = 0


@dataclass(frozen=True, slots=True)
class Reservation:
    """Credits held for one job until it is settled or refunded."""

    id: str
    actor_key: str
    chat_key: str | None
    credits: int
    bonus: int
    usd: float
    day: str
    month: str
    state: ReservationState
    created_at: datetime
    #: The instance (process) that holds it; None for rows written before instances existed.
    owner: str | None = None
    #: Purchased credits it holds (spent after ``credits`` and ``bonus``).
    paid: int = 0
    #: Of ``paid``, what a refunded purchase takes back should this job be refunded too.
    clawback: int = 0
    #: The turn it pays for, once the result was stored (delivery settles it by this).
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class Payment:
    """Money received for a pack, keyed by the platform's charge (or entitlement) id."""

    platform: str
    charge_id: str
    actor_key: str
    pack: str
    credits: int
    stars: int = 0
    #: Revenue in USD (Stars at the configured rate, or the Discord SKU's configured price).
    usd: float = 0.0
    state: PaymentState = "received"
    #: The quota day it arrived; the quota day it was refunded.
    day: str = ""
    refund_day: str | None = None
    #: Purchased credits a refund took back (what was left of them; spent ones stay spent).
    removed: int = 0
    #: Discord: the entitlement was consumed through the API.
    consumed: bool = False
    note: str | None = None
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Parked:
    """A result waiting for its platform (bot/outbox.py): where it goes and what it says."""

    #: The result's first turn: its turns are sent (and settled) together.
    delivery: str
    turn_ids: tuple[str, ...]
    platform: str
    #: Where it goes, as the adapter spells it (JSON).
    target: str
    #: What it says, without its images (JSON, bot/outbox.py).
    reply: str
    created_at: datetime

    def left(self, patience: float) -> float:
        """Seconds of ``patience`` (counted from ``created_at``: its image ready) left; 0 when spent."""
        return max(0.0, patience - (datetime.now(UTC) - self.created_at).total_seconds())


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user's row: settings, ban state and limit overrides."""

    key: str
    settings: UserSettings
    banned: bool = False
    ban_notified: bool = False
    daily_limit: int | None = None
    monthly_limit: int | None = None


class QuotaTx(Protocol):
    """Reads and writes inside one transaction that sees and changes all windows at once."""

    async def lock(self, actor_key: str | None, chat_key: str | None, day: str, month: str, *,
                   spend: bool = True) -> None:
        """Hold the counter rows of these windows until the transaction ends (one fixed order)."""
        # One order for every transaction (user day, user month, bonus, chat day, global day),
        # so many processes queue instead of deadlocking; SQLite's BEGIN IMMEDIATE holds all.
        ...

    async def used_credits(self, actor_key: str, *, day: str | None = None,
                           month: str | None = None) -> int:
        """Allowance credits held or spent by the actor in a day or month."""
        ...

    async def chat_used(self, chat_key: str, day: str) -> int:
        """Credits (allowance and bonus) held or spent in a chat on a day."""
        ...

    async def usd_spent(self, day: str) -> float:
        """USD held or spent across everyone on a day."""
        ...

    async def bonus(self, actor_key: str) -> int:
        """Bonus credits the actor has left."""
        ...

    async def reserved(self, actor_key: str) -> int:
        """Credits currently held (not yet settled) for the actor."""
        ...

    async def limits(self, actor_key: str) -> tuple[int | None, int | None]:
        """Per-user daily and monthly limit overrides (None = the default)."""
        ...

    async def standing(self, actor_key: str, day: str, month: str, *,
                       chat_key: str | None = None, reserved: bool = False) -> Standing:
        """limits, used_credits (day, month), bonus, paid, chat_used and reserved in one read."""
        ...

    async def reservation(self, reservation_id: str) -> Reservation | None:
        """A reservation by id."""
        ...

    async def add_reservation(self, reservation: Reservation) -> None:
        """Insert a new held reservation."""
        ...

    async def close_reservation(self, reservation_id: str,
                                state: ReservationState) -> Reservation | None:
        """Mark a held reservation settled or refunded; it as it was, or None if not held."""
        # One conditional update decides: of two processes closing it at once, exactly one wins.
        ...

    async def append(self, entry: LedgerEntry) -> None:
        """Append one ledger row."""
        ...

    async def paid(self, actor_key: str) -> int:
        """Purchased credits the actor has left."""
        ...

    async def held_paid(self, actor_key: str) -> int:
        """Lock the actor's held jobs (before ``lock``); the purchased credits they hold unmarked."""
        # Jobs closing take their reservation's row first and the counters after (the ledger
        # trigger): taking them in that order too is what keeps a refund from deadlocking one.
        ...

    async def mark_clawback(self, actor_key: str, credits: int) -> int:
        """Mark up to ``credits`` purchased credits held by jobs for taking back; how many."""
        ...

    async def payment(self, platform: str, charge_id: str) -> Payment | None:
        """A payment, locked until the transaction ends."""
        ...

    async def close_payment(self, payment: Payment, state: PaymentState, *,
                            removed: int = 0, refund_day: str | None = None,
                            at: datetime | None = None) -> bool:
        """Move a payment on from the state it has (credited ``at``); False if it had moved."""
        ...

    async def purchased_since(self, actor_key: str, since: datetime) -> int:
        """Credits of the actor's packs credited at or after ``since`` and not refunded."""
        ...


class Store(BlobIndex, GalleryStore, HandoffStore, Protocol):
    """Everything the core persists: users, ledger, reservations, turns, bindings, blobs."""

    # Free text from upstreams (provider state, ledger notes) is masked of known secrets before
    # it is written; a write the database refuses raises StoreUnavailable.

    async def open(self) -> None:
        """Connect and apply migrations."""
        ...

    async def close(self) -> None:
        """Flush and disconnect."""
        ...

    async def writable(self) -> bool:
        """Whether a write would go through now (readiness); cheap, and leaves nothing behind."""
        ...

    def quota_tx(self) -> AbstractAsyncContextManager[QuotaTx]:
        """A transaction for quota work: reserve, close, grant and usage see one state."""
        ...

    def quota_view(self) -> AbstractAsyncContextManager[QuotaTx]:
        """Quota reads that write nothing (a caption's usage): each read sees one state."""

    async def reservation_of(self, turn_id: str) -> Reservation | None:
        """The reservation that pays for ``turn_id``, in whatever state it is."""
        ...

    async def held_reservations(self) -> list[Reservation]:
        """Every reservation still held, whoever holds it."""
        ...

    async def register_instance(self, instance_id: str, lease_seconds: float) -> None:
        """Record a starting process and its first lease (and forget long-dead ones)."""
        ...

    async def renew_instance(self, instance_id: str, lease_seconds: float) -> bool:
        """Extend the lease; False when it had lapsed (it is taken again all the same)."""
        ...

    async def retire_instance(self, instance_id: str) -> None:
        """A clean stop: the instance is gone, and whatever it still holds is orphaned."""
        ...

    async def orphaned_reservations(self) -> list[Reservation]:
        """Held reservations whose owner is gone: none recorded, unknown, or its lease lapsed."""
        # A parked result's are never among them: the outbox sends or refunds those itself.
        ...

    async def park(self, parked: Parked) -> None:
        """Keep a result for its platform (again: replaced, since when kept); reservations stay held."""
        ...

    async def unpark(self, delivery: str) -> None:
        """The parked result was sent or given up: forget it."""
        ...

    async def claim_parked(self, platform: str, owner: str) -> list[Parked]:
        """``platform``'s parked results whose reservations' owner is gone, now ``owner``'s."""
        ...

    async def ledger(self, actor_key: str | None = None) -> list[LedgerEntry]:
        """Ledger rows, oldest first, optionally for one actor."""
        ...

    async def ledger_since(self, day: str) -> list[LedgerEntry]:
        """Ledger rows of ``day`` (YYYY-MM-DD, quota zone) and later, oldest first."""
        ...

    async def recent_turns(self, limit: int, actor_key: str | None = None) -> list[Turn]:
        """The newest ``limit`` turns (of one actor, or of everyone), oldest first."""
        ...

    async def group_settings(self, key: str) -> str | None:
        """A group's /config settings as JSON (bot.groups), None when never set."""
        ...

    async def save_group_settings(self, key: str, data: str, *, by: str) -> None:
        """Store a group's /config settings, and who set them."""
        ...

    async def all_group_settings(self) -> list[tuple[str, str, str | None]]:
        """Every configured group: (key, settings JSON, set by), for the operator view."""
        ...

    async def note_chat(self, chat_key: str, group_key: str) -> None:
        """Remember that ``chat_key`` (a Discord channel) belongs to ``group_key`` (its server)."""
        ...

    async def member_used(self, actor_key: str, group_key: str, day: str) -> int:
        """Credits a member held or spent in a group (any of its chats) on a day."""
        ...

    async def get_user(self, key: str) -> UserRecord:
        """A user's record (defaults when unknown)."""
        ...

    async def save_user_settings(self, key: str, settings: UserSettings) -> None:
        """Store a user's defaults."""
        ...

    async def set_user_flags(self, key: str, *, banned: bool | None = None,
                             ban_notified: bool | None = None, daily_limit: int | None = None,
                             monthly_limit: int | None = None) -> None:
        """Update ban state or limit overrides (None leaves a field as it is)."""
        ...

    async def add_turn(self, turn: Turn) -> None:
        """Insert a turn."""
        ...

    async def get_turn(self, turn_id: str) -> Turn | None:
        """A turn by id."""
        ...

    async def delete_turn(self, turn_id: str) -> None:
        """Delete a turn and its bindings (children keep living as roots)."""
        ...

    async def turns_of(self, actor_key: str) -> list[Turn]:
        """Every turn of an actor."""
        ...

    async def bind(self, turn_id: str, messages: list[MessageRef]) -> None:
        """Map platform messages to a turn."""
        ...

    async def bound_turn(self, message: MessageRef) -> str | None:
        """The turn a platform message shows, if any."""
        ...

    async def bindings_of(self, turn_id: str) -> list[MessageRef]:
        """Platform messages bound to a turn."""
        ...

    async def stats(self, day: str) -> dict[str, float]:
        """Operator figures for a day: jobs, credits, USD, users."""
        ...

    async def record_payment(self, payment: Payment) -> Payment:
        """Insert a payment unless its charge id is known; the stored row either way."""
        ...

    async def get_payment(self, platform: str, charge_id: str) -> Payment | None:
        """A payment by its platform's charge id."""
        ...

    async def payments(self, *, actor_key: str | None = None, since_day: str | None = None,
                       state: PaymentState | None = None) -> list[Payment]:
        """Payments (of one actor, received or refunded from a day on, in a state), oldest first."""
        ...

    async def mark_consumed(self, platform: str, charge_id: str) -> None:
        """Note that the platform's entitlement for a payment was consumed."""
        ...
