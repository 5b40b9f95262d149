"""Frozen value types that cross the boundary between the core and the platform adapters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from bot.sniff import sniffed_mime

ChatKind = Literal["private", "group", "channel"]
RequestKind = Literal["imagine", "edit", "reroll", "upscale", "variation"]
ActionKind = Literal["reroll", "upscale", "variations", "edit", "delete"]
ProgressStage = Literal["queued", "started", "finished", "failed"]


@dataclass(frozen=True, slots=True)
class Actor:
    """A person on a platform, as the core sees them."""

    platform: str
    user_id: str
    display_name: str = ""
    locale: str | None = None
    #: Vouched for by the adapter (e.g. Discord Manage Server): may moderate others' results and
    #: use admin commands. Free credits come only from ``[bot] admins``, never from this flag.
    is_admin: bool = False

    @property
    def key(self) -> str:
        """Stable identity used by the store and the ledger, e.g. ``telegram:42``."""
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True, slots=True)
class ChatRef:
    """The chat (DM, group, channel, thread) a request came from."""

    platform: str
    chat_id: str
    kind: ChatKind = "private"
    #: The server or group whose /config applies (a Discord guild); None: the chat itself.
    group_id: str | None = None
    #: Where in the group: a Telegram forum topic (a Discord channel is ``chat_id``).
    topic: str | None = None
    #: A Discord age-restricted channel (``[safety] relaxed = "age-restricted"``).
    age_restricted: bool = False

    @property
    def key(self) -> str:
        """Stable identity used by the store, e.g. ``telegram:-100123``."""
        return f"{self.platform}:{self.chat_id}"


@dataclass(frozen=True, slots=True)
class MessageRef:
    """A platform message that can be bound to a turn."""

    platform: str
    chat_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class ImageData:
    """Encoded image bytes with their MIME type and (when known) their pixel size."""

    data: bytes = field(repr=False)
    mime: str
    width: int = 0
    height: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        # The type is what the bytes are, whatever an upstream or an upload labelled them: a
        # PNG called image/svg+xml, or a label with CR/LF, must never be stored or served.
        object.__setattr__(self, "mime", sniffed_mime(self.data))

    @property
    def size_bytes(self) -> int:
        """Length of the encoded image in bytes."""
        return len(self.data)

    @property
    def extension(self) -> str:
        """File extension matching the MIME type."""
        return {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}.get(
            self.mime, "bin"
        )


@dataclass(frozen=True, slots=True)
class ImageLink:
    """A reference image by URL, for a route that fetches it itself (bot/links.py decides)."""

    #: Signed and expiring (a Discord CDN attachment URL): kept out of reprs and logs.
    url: str = field(repr=False)
    mime: str
    #: Bytes, as the platform declared them.
    size: int
    name: str = ""


@dataclass(frozen=True, slots=True)
class Budget:
    """What a destination accepts: bytes, pixel limits, aspect ratio and formats."""

    max_bytes: int
    max_side: int | None = None
    max_pixels: int | None = None
    max_sum_wh: int | None = None
    max_ratio: float | None = None
    formats: tuple[str, ...] = ("image/png", "image/jpeg", "image/webp")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a platform shows, declared by its adapter; the core fits results to it."""

    caption_limit: int
    #: What an image is shown as (a photo, an attachment); None: served as stored (the web).
    photo_budget: Budget | None
    #: Where the untouched original may go as a file too (Telegram documents); None: nowhere.
    document_budget: Budget | None = None
    #: Send the original as a file too from this long side up, or whenever the photo was
    #: re-encoded (a 4K result's photo preview is recompressed by the platform).
    original_from_side: int | None = None
    files_per_message: int = 10
    buttons: bool = True


@dataclass(frozen=True, slots=True)
class Options:
    """Per-request generation options; ``None`` means "use the user's or the bot's default"."""

    model: str | None = None
    size: str | None = None
    aspect: str | None = None
    #: Ground the image in Google Search (``--search``), where the model offers it.
    search: bool | None = None
    #: Thinking level (``--thinking high``), where the model takes one.
    thinking: str | None = None
    #: Candidates to make at once (``--n 1..4``); None: the user's default (1).
    n: int | None = None
    #: A style preset (``--style NAME``).
    style: str | None = None
    #: What to leave out (``--no a, b``).
    negative: tuple[str, ...] = ()
    #: How far variations stray (``--vary subtle|strong``).
    vary: str | None = None


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """What a user asked for: a prompt, reference images and options."""

    actor: Actor
    chat: ChatRef
    prompt: str
    references: tuple[ImageData, ...] = ()
    options: Options = Options()
    kind: RequestKind = "imagine"
    parent_turn_id: str | None = None
    #: References by URL (bot/links.py), after ``references`` in order.
    links: tuple[ImageLink, ...] = ()


@dataclass(frozen=True, slots=True)
class Action:
    """A button on a result: an action and the turn it acts on (fits 64-byte callback data)."""

    kind: ActionKind
    turn_id: str
    size: str | None = None
    cost: int | None = None
    #: The candidate's number in a batch (the label's "U2", "V3"); not encoded.
    index: int | None = None
    #: A batch reroll makes this many again (encoded as ``x4``).
    batch: int | None = None
    #: How far a variation strays: ``subtle`` or ``strong`` (encoded; absent means subtle).
    vary: str | None = None

    def encode(self) -> str:
        """Serialize for Telegram callback_data / Discord custom_id (e.g. ``ib:upscale:T:4K``)."""
        parts = ["ib", self.kind, self.turn_id]
        if self.size:
            parts.append(self.size)
        elif self.vary and self.kind == "variations":
            parts.append(self.vary)
        elif self.batch:
            parts.append(f"x{self.batch}")
        return ":".join(parts)

    @staticmethod
    def decode(raw: str) -> Action | None:
        """Parse what :meth:`encode` produced; ``None`` for anything else."""
        parts = raw.split(":")
        if len(parts) not in (3, 4) or parts[0] != "ib":
            return None
        kind = parts[1]
        if kind not in ("reroll", "upscale", "variations", "edit", "delete"):
            return None
        extra = parts[3] if len(parts) == 4 else None
        if extra and extra[0] == "x":
            count = extra[1:]
            if kind != "reroll" or not count.isdigit() or not 1 < int(count) <= 4:
                return None
            return Action(kind="reroll", turn_id=parts[2], batch=int(count))
        if kind == "variations":
            vary = extra if extra in ("subtle", "strong") else None
            return None if extra and vary is None else Action("variations", parts[2], vary=vary)
        return Action(kind=kind, turn_id=parts[2], size=extra)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Reply:
    """The core's neutral answer; each adapter renders it for its platform."""

    text: str
    images: tuple[ImageData, ...] = ()
    actions: tuple[Action, ...] = ()
    turn_id: str | None = None
    error: str | None = None
    credits_used: int = 0
    locale: str = "en"
    #: A batch's candidates, one turn per image in ``images`` order (empty: a single result).
    candidates: tuple[str, ...] = ()
    #: When its images were ready (epoch seconds): the model's answer in, its turn made. An
    #: adapter sends results in this order when the platform's budget makes them wait.
    ready_at: float | None = None

    @property
    def ok(self) -> bool:
        """True when this reply is a result rather than an error."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class Turn:
    """One generation in a conversation tree."""

    id: str
    actor_key: str
    chat_key: str
    prompt: str
    model: str
    size: str | None
    aspect: str | None
    parent_id: str | None
    input_hashes: tuple[str, ...]
    output_hashes: tuple[str, ...]
    provider_state: str | None
    created_at: datetime
    kind: RequestKind = "imagine"
    credits: int = 0
    #: The request's recipe: its style preset and what it left out, kept by a reroll, an upscale
    #: and a variation (``turns.recipe``).
    style: str | None = None
    negative: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One past result in /history: the turn, a line about it and its buttons."""

    turn: Turn
    line: str
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of a user's results, newest first (``page`` counts from 1)."""

    items: tuple[HistoryItem, ...]
    page: int
    pages: int
    text: str
    locale: str = "en"
    #: The first item's number on this page (items are numbered across pages).
    first: int = 1


@dataclass(frozen=True, slots=True)
class Described:
    """/describe's answer: 2-4 prompts for an image, each runnable by a button."""

    id: str
    prompts: tuple[str, ...]
    text: str
    credits_used: int = 0
    locale: str = "en"


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """One quota window: its limit, what is used (held included), what is left, when it resets."""

    name: str
    limit: float
    used: float
    resets_at: datetime | None

    @property
    def left(self) -> float:
        """What can still be spent in this window (never negative)."""
        return max(0.0, self.limit - self.used)


@dataclass(frozen=True, slots=True)
class Usage:
    """What an actor may still spend, across every window that applies to them."""

    actor_key: str
    windows: tuple[WindowUsage, ...]
    reserved: int
    bonus: int
    exempt: bool = False
    running: int = 0
    #: Purchased credits left ([shop]), spent after the bonus credits.
    paid: int = 0

    def window(self, name: str) -> WindowUsage | None:
        """The window called ``name`` if it applies."""
        return next((w for w in self.windows if w.name == name), None)

    @property
    def credits_left(self) -> int:
        """Credits the actor can spend now: the tightest window plus bonus and purchased credits."""
        credit_windows = [w.left for w in self.windows if w.name != "global_daily_usd"]
        free = int(min(credit_windows)) if credit_windows else 0
        return free + self.bonus + self.paid


@dataclass(frozen=True, slots=True)
class Progress:
    """A job's progress event, for adapters to show (queue position, elapsed time)."""

    job_id: str
    stage: ProgressStage
    position: int | None = None
    elapsed: float = 0.0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class UserSettings:
    """A user's saved defaults; ``None`` means "use the bot's default"."""

    model: str | None = None
    size: str | None = None
    aspect: str | None = None
    locale: str | None = None
    #: "on": ground images in Google Search where the model offers it (``--search`` per job).
    search: str | None = None
    #: Candidates per request (``--n`` per job).
    n: int | None = None
    #: A style preset (``--style`` per job).
    style: str | None = None


@dataclass(frozen=True, slots=True)
class Handoff:
    """Where a job's result goes should another process finish it (bot/handoff.py)."""

    platform: str
    #: The place as the adapter spells it (JSON), read when the job starts waiting for a slot.
    target: Callable[[], str]
