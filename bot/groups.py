"""Per-server / per-group settings set with ``/config`` by that group's admins.

A group can only narrow the global config: which channels (Discord) or forum topics (Telegram)
the bot answers in, the models and sizes members may use, a per-member daily cap inside the
group pool, defaults (model, size, aspect, style), whether replies to the bot's images edit, and
the safety level. Whether the actor is a group admin is the adapter's to verify from the platform
(Telegram getChatMember, Discord Manage Server); ``[bot] admins`` may configure any group.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, timedelta
from typing import Any, TypeVar

from bot.catalog import SIZE_ORDER, Lineup, ModelSpec, normalize_size
from bot.choices import Choices
from bot.config import Settings
from bot.domain import Actor, ChatRef, Options, Turn, UserSettings
from bot.errors import BotError, InvalidOption, NotAllowed, QuotaExceeded
from bot.quotas import Quotas
from bot.safety import LEVELS, Level, effective
from bot.storage.base import Store

#: What ``/config KEY ...`` sets, in the order ``/config`` lists them.
KEYS = ("channels", "models", "sizes", "member-daily", "model", "size", "aspect", "style",
        "reply-edits", "safety")
STYLE_MAX = 200


class GroupOnly(BotError):
    """/config was used outside a group or server."""

    key = "error.group_only"
    exit_code = 2


class NotHere(BotError):
    """The group allows the bot only in other channels or topics."""

    key = "error.not_here"
    exit_code = 2

    def __init__(self, places: str) -> None:
        super().__init__(f"allowed only in {places}", places=places)


class GroupLimit(BotError):
    """The group does not allow this model or size."""

    key = "error.group_option"
    exit_code = 2

    def __init__(self, option: str, value: str, allowed: list[str]) -> None:
        super().__init__(f"{option}={value!r} not allowed here", option=option, value=value,
                         allowed=", ".join(allowed))


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """One group's narrowing of the global config; empty tuples and None mean "as global"."""

    channels: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    member_daily: int | None = None
    model: str | None = None
    size: str | None = None
    aspect: str | None = None
    style: str | None = None
    reply_edits: bool = True
    safety: str | None = None

    def dumps(self) -> str:
        """JSON for the store."""
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str | None) -> GroupSettings:
        """From the store (unknown keys from a newer version are dropped)."""
        data: dict[str, Any] = json.loads(raw) if raw else {}
        names = {f.name for f in fields(cls)}
        known: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                 for k, v in data.items() if k in names}
        return cls(**known)


def group_key(chat: ChatRef) -> str | None:
    """The store key of the group ``chat`` belongs to; None in a private chat."""
    if chat.kind == "private":
        return None
    return f"{chat.platform}:{chat.group_id or chat.chat_id}"


def place_of(chat: ChatRef) -> str | None:
    """Where in its group ``chat`` is: a Discord channel id, a Telegram topic id (or None)."""
    if chat.platform == "telegram":
        return chat.topic
    return chat.chat_id if chat.group_id else None


def show_place(chat: ChatRef, place: str) -> str:
    """A channel or topic as the platform links it."""
    if chat.platform == "discord":
        return f"<#{place}>"
    internal = chat.chat_id.removeprefix("-100")  # t.me/c/ links take a supergroup's bare id
    return f"https://t.me/c/{internal}/{place}"


@dataclass(frozen=True, slots=True)
class Admitted:
    """A job the group lets through: its settings, model, size, aspect and safety level."""

    group: GroupSettings
    spec: ModelSpec
    size: str
    aspect: str
    level: Level


class Groups:
    """Reads, checks and changes group settings."""

    def __init__(self, settings: Settings, store: Store, lineup: Lineup) -> None:
        self.settings = settings
        self.store = store
        self.lineup = lineup
        self._noted: set[str] = set()  # channels whose server the store already knows

    async def get(self, chat: ChatRef) -> GroupSettings:
        """The settings of ``chat``'s group (defaults in a private chat)."""
        key = group_key(chat)
        if key is None:
            return GroupSettings()
        return GroupSettings.loads(await self.store.group_settings(key))

    async def admitted(self, choices: Choices, user: UserSettings, opts: Options, chat: ChatRef,
                       *, model: str | None, kept_size: str | None, kept_aspect: str | None,
                       parent: Turn | None) -> Admitted:
        """Resolve a job's options inside its group's limits (NotHere, GroupLimit, InvalidOption)."""
        kept_aspect = kept_aspect or (parent.aspect if parent else None)
        group = await self.get(chat)
        self.admit(group, chat)
        user = self.defaults(group, user)
        spec, size, aspect = choices.resolve(user, opts, model=model, kept_size=kept_size,
                                             kept_aspect=kept_aspect)
        other = self.fallback(group, spec, asked=bool(opts.model))
        if other is not None:  # a saved or kept model the group does not allow: its own instead
            spec, size, aspect = choices.resolve(user, opts, model=other, kept_size=kept_size,
                                                 kept_aspect=kept_aspect)
        if group.sizes and size not in group.sizes and not opts.size:
            size = next((s for s in spec.sizes if s in group.sizes), size)
        self.check(group, spec, size)
        return Admitted(group, spec, size, aspect, self.level(group, chat))

    def defaults(self, group: GroupSettings, user: UserSettings) -> UserSettings:
        """The user's saved defaults, else the group's."""
        return replace(user, model=user.model or group.model, size=user.size or group.size,
                       aspect=user.aspect or group.aspect)

    def admit(self, group: GroupSettings, chat: ChatRef) -> None:
        """NotHere when the group keeps the bot to other channels or topics."""
        place = place_of(chat)
        if group.channels and place not in group.channels:
            raise NotHere(", ".join(show_place(chat, p) for p in group.channels))

    def check(self, group: GroupSettings, spec: ModelSpec, size: str) -> None:
        """GroupLimit when the group does not allow ``spec`` or ``size``."""
        if group.models and spec.name not in group.models:
            raise GroupLimit("model", spec.name, list(group.models))
        if group.sizes and size not in group.sizes:
            raise GroupLimit("size", size, [s for s in spec.sizes if s in group.sizes])

    def fallback(self, group: GroupSettings, spec: ModelSpec, asked: bool) -> str | None:
        """A model the group allows instead of a saved default it does not (None: keep)."""
        if asked or not group.models or spec.name in group.models:
            return None
        return group.model if group.model in group.models else group.models[0]

    async def member_cap(self, group: GroupSettings, actor: Actor, chat: ChatRef, cost: int,
                         quotas: Quotas) -> None:
        """QuotaExceeded when the member's share of the group pool today would pass the cap."""
        key = group_key(chat)
        if key is None:
            return
        if chat.key != key and chat.key not in self._noted:  # a channel counts for its server
            await self.store.note_chat(chat.key, key)
            self._noted.add(chat.key)
        if group.member_daily is None or quotas.is_exempt(actor):
            return
        used = await self.store.member_used(actor.key, key, quotas.today())
        if used + cost > group.member_daily:
            local = quotas.now_local()
            midnight = (local.replace(hour=0, minute=0, second=0, microsecond=0)
                        + timedelta(days=1)).astimezone(UTC)
            raise QuotaExceeded("member_daily", max(0, group.member_daily - used), cost, midnight)

    def level(self, group: GroupSettings, chat: ChatRef) -> Level:
        """The safety level a job in ``chat`` runs at."""
        cfg = self.settings.safety
        return effective(group.safety, cfg.level, cfg.relaxed, chat)

    async def configure(self, actor: Actor, chat: ChatRef, args: list[str], *,
                        group_admin: bool) -> GroupSettings:
        """Apply ``/config KEY VALUE...`` (no args: just read); NotAllowed for non-admins."""
        key = group_key(chat)
        if key is None:
            raise GroupOnly()
        current = GroupSettings.loads(await self.store.group_settings(key))
        if not args:
            return current
        if not (group_admin or self.settings.is_admin(actor.key)):
            raise NotAllowed()
        updated = self.apply(current, chat, args[0].lower(), args[1:])
        await self.store.save_group_settings(key, updated.dumps(), by=actor.key)
        return updated

    def apply(self, group: GroupSettings, chat: ChatRef, name: str,
              values: list[str]) -> GroupSettings:
        """``group`` with one setting changed; InvalidOption names what is allowed."""
        if name == "reset":
            return GroupSettings()
        raw = " ".join(values).strip()
        off = raw.lower() in ("", "off", "all", "any", "default")
        items = [v for v in raw.replace(",", " ").split() if v]
        if name == "channels":
            here = place_of(chat)
            spots = [here if v.lower() == "here" else v.strip("<#>") for v in items]
            picked: list[str] = [p for p in spots if p]
            # "here" outside a channel or forum topic names nothing: refuse, never mean "all".
            if not off and (len(picked) < len(spots) or not all(p.isdigit() for p in picked)):
                raise InvalidOption("channels", raw, ["here", "ID", "all"])
            return replace(group, channels=() if off else tuple(dict.fromkeys(picked)))
        if name == "models":
            found = [self._model(v) for v in items] if not off else []
            return replace(group, models=tuple(dict.fromkeys(s.name for s in found)))
        if name == "sizes":
            sizes = [normalize_size(v) for v in items] if not off else []
            bad = [s for s in sizes if s not in SIZE_ORDER]
            if bad:
                raise InvalidOption("sizes", bad[0], list(SIZE_ORDER))
            return replace(group, sizes=tuple(dict.fromkeys(sizes)))
        if name == "member-daily":
            if off:
                return replace(group, member_daily=None)
            if not raw.isdigit() or int(raw) > 1_000_000:
                raise InvalidOption("member-daily", raw, ["0..1000000", "off"])
            return replace(group, member_daily=int(raw))
        if name == "model":
            return replace(group, model=None if off else self._model(raw).name)
        if name == "size":
            size = normalize_size(raw)
            if not off and size not in SIZE_ORDER:
                raise InvalidOption("size", raw, list(SIZE_ORDER))
            return replace(group, size=None if off else size)
        if name == "aspect":
            aspects = sorted({a for m in self.lineup.models.values() for a in m.aspects})
            if not off and raw not in aspects:
                raise InvalidOption("aspect", raw, aspects)
            return replace(group, aspect=None if off else raw)
        if name == "style":
            return replace(group, style=None if raw.lower() in ("", "off") else raw[:STYLE_MAX])
        if name == "reply-edits":
            if raw.lower() not in ("on", "off"):
                raise InvalidOption("reply-edits", raw, ["on", "off"])
            return replace(group, reply_edits=raw.lower() == "on")
        if name == "safety":
            return replace(group, safety=self._level(raw))
        raise InvalidOption("config", name, [*KEYS, "reset"])

    def _model(self, name: str) -> ModelSpec:
        spec = self.lineup.find(name, where="/config")
        if spec is None:
            raise InvalidOption("model", name, list(self.lineup.models))
        return spec

    def _level(self, raw: str) -> str:
        level = raw.lower()
        relaxed = self.settings.safety.relaxed != "nowhere"
        permitted: list[str] = [lv for lv in LEVELS if lv != "relaxed" or relaxed]
        if level not in permitted:
            raise InvalidOption("safety", raw, permitted)
        return level


E = TypeVar("E", bound=BotError)


def leveled(err: E, level: str) -> E:
    """``err`` carrying the safety level that applied (a refusal names it)."""
    err.params["safety"] = level
    return err


def styled(prompt: str, group: GroupSettings) -> str:
    """The prompt with the group's default style appended (the user's words first)."""
    return f"{prompt}\n\nStyle: {group.style}" if group.style else prompt


def describe(t: Callable[..., str], locale: str, group: GroupSettings) -> str:
    """The /config answer: every setting of the group, translated."""
    def show(value: object) -> str:
        if value is None or value == ():
            return t(locale, "group.all") if isinstance(value, tuple) else t(locale, "group.none")
        if isinstance(value, bool):
            return t(locale, "group.on" if value else "group.off")
        if isinstance(value, tuple):
            return ", ".join(str(v) for v in value)
        return str(value)

    values = {k: getattr(group, k.replace("-", "_")) for k in KEYS}
    lines = [t(locale, "group.title")]
    lines += [t(locale, "group.line", key=k, value=show(v)) for k, v in values.items()]
    return "\n".join(lines)
