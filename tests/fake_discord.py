"""A loopback fake of Discord (gateway + REST + attachment CDN) for a real discord.py client."""

# What it knows about the real thing, learned the hard way:
#
# - a plain ``discord.Client`` connects to the gateway URL directly (only sharded clients ask
#   ``GET /gateway/bot``); frames are sent as TEXT, so discord.py skips zlib decompression;
# - start-up calls ``GET /users/@me`` and ``GET /oauth2/applications/@me``;
# - READY needs ``user``, ``guilds``, ``session_id`` and ``resume_gateway_url``;
# - an INTERACTION_CREATE without ``id``, ``application_id``, ``type``, ``token``, ``version``,
#   ``attachment_size_limit`` and ``data`` is silently dropped by discord.py;
# - JSON responses need the content type exactly ``application/json`` (no charset);
# - discord.py only retries a 429 that carries a ``Via`` header;
# - command-sync responses need ``description`` on every command (context menus too).
#
# It enforces what Discord enforces: the 3-second acknowledgement (10062 Unknown interaction), the
# interaction token's life (401 / 50027 Invalid Webhook Token; shortened for tests), the per-file
# upload limit (413 / 40005) on every path that uploads, one acknowledgement per interaction
# (40060), the message body limits, empty messages, replies to unknown messages and response
# types that do not fit the interaction (tests/discord_rules.py, each with its docs page),
# components v2 (the flag, no content or embeds with it, component types and limits,
# ``attachment://`` media naming an uploaded file, a flag that is never removed) and the
# message-content intent (other people's messages arrive without content unless they are DMs,
# @mention the bot, or ping-reply to a regular bot message; privileged intents the portal has
# not switched on close the gateway with 4014). Helpers read like a chat: ``slash``,
# ``context_menu``, ``submit_modal``, ``press``, ``select``, ``user_message`` and ``wait_for``.

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web
from PIL import Image

from adapters.discord import DiscordAdapter
from bot.bootstrap import Core, build_core
from bot.config import Settings
from bot.domain import MessageRef, Turn
from bot.providers.base import ImageProvider
from tests import discord_rules
from tests.helpers import photo

#: A user's photo (the tests import it from here).
png = photo

MIB = 1024 * 1024
DISCORD_EPOCH_MS = 1420070400000
MESSAGE_CONTENT_INTENT = 1 << 15
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | MESSAGE_CONTENT_INTENT
EPHEMERAL = 64
IS_COMPONENTS_V2 = discord_rules.IS_COMPONENTS_V2
#: Flags a bot may set on a message it sends (#message-object-message-flags).
SETTABLE_FLAGS = EPHEMERAL | IS_COMPONENTS_V2 | (1 << 2) | (1 << 12)
MANAGE_GUILD = 1 << 5
MANAGE_MESSAGES = 1 << 13
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31)
_NAME_RE = re.compile(r"^[-_\w]{1,32}$")
_counter = itertools.count()


def snowflake() -> int:
    """A Discord-style id whose timestamp is now (discord.py derives created_at from it)."""
    return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(_counter) % 4096)


def iso_now() -> str:
    """Now, as Discord writes timestamps."""
    return datetime.now(UTC).isoformat()


def sniff(data: bytes) -> str:
    """Content type from magic bytes (discord.py uploads everything as octet-stream)."""
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "application/octet-stream"


@dataclass(frozen=True)
class FakeUser:
    """A person (or the bot)."""

    id: int
    name: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        """User object."""
        return {"id": str(self.id), "username": self.name, "discriminator": "0",
                "global_name": self.name, "avatar": None, "bot": self.bot, "public_flags": 0}


@dataclass
class FakeChannel:
    """A guild text channel (type 0), a thread (11) or a DM (1)."""

    id: int
    name: str
    guild_id: int | None = None
    type: int = 0
    parent_id: int | None = None
    recipient: FakeUser | None = None

    def payload(self) -> dict[str, Any]:
        """Channel object."""
        if self.type == 1:
            recipients = [self.recipient.payload()] if self.recipient else []
            return {"id": str(self.id), "type": 1, "recipients": recipients,
                    "last_message_id": None}
        data: dict[str, Any] = {"id": str(self.id), "type": self.type, "name": self.name,
                                "position": 0, "permission_overwrites": [], "nsfw": False,
                                "guild_id": str(self.guild_id), "parent_id": None}
        if self.type == 11:
            data.update(parent_id=str(self.parent_id), owner_id="1", member_count=1,
                        message_count=0, thread_metadata={
                            "archived": False, "auto_archive_duration": 1440,
                            "archive_timestamp": iso_now(), "locked": False})
        return data


@dataclass
class FakeGuild:
    """A guild with channels; ``moderators`` have Manage Server and Manage Messages."""

    id: int
    name: str
    channels: list[FakeChannel] = field(default_factory=list)
    moderators: set[int] = field(default_factory=set)

    def permissions(self, user: FakeUser) -> int:
        """The member's permissions in every channel."""
        extra = MANAGE_GUILD | MANAGE_MESSAGES if user.id in self.moderators else 0
        return MEMBER_PERMISSIONS | extra

    def member(self, user: FakeUser) -> dict[str, Any]:
        """Member object (with permissions, as interactions carry it)."""
        return {"user": user.payload(), "roles": [], "joined_at": iso_now(), "flags": 0,
                "deaf": False, "mute": False, "permissions": str(self.permissions(user))}


@dataclass
class FakeFile:
    """An uploaded or attached file, kept on the fake CDN."""

    filename: str
    data: bytes = field(repr=False)
    content_type: str = ""
    id: int = field(default_factory=snowflake)

    def __post_init__(self) -> None:
        self.content_type = self.content_type or sniff(self.data)

    @property
    def size(self) -> int:
        """Bytes."""
        return len(self.data)

    def dimensions(self) -> tuple[int, int] | None:
        """Pixel size when it is an image (header only)."""
        try:
            with Image.open(io.BytesIO(self.data)) as im:
                return im.size
        except Exception:
            return None


@dataclass
class FakeMessage:
    """A message as users see it (ephemeral ones only by their interaction's user)."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    content: str = ""
    flags: int = 0
    attachments: list[FakeFile] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    embeds: list[dict[str, Any]] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None
    mentions: list[FakeUser] = field(default_factory=list)
    reference: FakeMessage | None = None
    interaction_id: int | None = None
    via: str = "channel"
    loading: bool = False
    deleted: bool = False
    edits: int = 0

    @property
    def ephemeral(self) -> bool:
        """Only the interaction's user sees it."""
        return bool(self.flags & EPHEMERAL)

    @property
    def v2(self) -> bool:
        """A components-v2 message (its text is in text displays, its files in galleries)."""
        return bool(self.flags & IS_COMPONENTS_V2)

    @property
    def text(self) -> str:
        """What users read: the content, or a v2 message's text displays, one per line."""
        parts = [self.content] if self.content else []
        parts += [c["content"] for c in self._walk() if c.get("type") == 10]
        return "\n".join(parts)

    def gallery(self) -> list[FakeFile]:
        """The attachments a v2 message shows in its media galleries, in order."""
        by_url = {f"attachment://{f.filename}": f for f in self.attachments}
        by_id = {str(f.id): f for f in self.attachments}
        shown = []
        for comp in self._walk():
            for item in comp.get("items", []) if comp.get("type") == 12 else []:
                media = item["media"]
                found = by_id.get(str(media.get("attachment_id"))) or by_url.get(media["url"])
                if found is not None:
                    shown.append(found)
        return shown

    def buttons(self) -> list[tuple[str, str]]:
        """(label, custom_id) of every button."""
        return [(c.get("label", ""), c.get("custom_id", "")) for c in self._walk()
                if c.get("type") == 2]

    def custom_ids(self) -> list[str]:
        """Every component's custom_id."""
        return [c["custom_id"] for c in self._walk() if "custom_id" in c]

    def _walk(self) -> Iterable[dict[str, Any]]:
        stack = list(self.components)
        while stack:
            comp = stack.pop(0)
            yield comp
            stack.extend(comp.get("components", []))
            for key in ("component", "accessory"):
                if key in comp:
                    stack.append(comp[key])

    def pings(self) -> set[str]:
        """Who gets notified: ``everyone``, ``user:ID``, ``role:ID`` (Discord's rules)."""
        if self.ephemeral:
            return set()
        am = self.allowed_mentions
        parse = set(am.get("parse", [])) if am is not None else {"users", "roles", "everyone"}
        users = {str(u) for u in (am or {}).get("users", [])}
        found: set[str] = set()
        # Text displays ping like content does (components/reference#text-display).
        text = self.text
        if ("@everyone" in text or "@here" in text) and "everyone" in parse:
            found.add("everyone")
        for uid in re.findall(r"<@!?(\d+)>", text):
            if "users" in parse or uid in users:
                found.add(f"user:{uid}")
        for rid in re.findall(r"<@&(\d+)>", text):
            if "roles" in parse or rid in {str(r) for r in (am or {}).get("roles", [])}:
                found.add(f"role:{rid}")
        if self.reference is not None and (am is None or am.get("replied_user")):
            found.add(f"user:{self.reference.author.id}")
        return found

    def content_visible(self, fake: FakeDiscord) -> bool:
        """Whether the bot sees this message's content without the message-content intent.

        https://discord.com/developers/docs/gateway/you-might-not-need-a-privileged-intent:
        the bot's own messages, DMs, "messages that @mention your app" and "replies to your
        app's messages ... to a regular bot message (not an interaction response) and the user
        has 'ping on reply' enabled. It does not apply to replies to slash command responses."
        """
        if self.author.bot or self.guild_id is None:
            return True
        if re.search(rf"<@!?{fake.bot.id}>", self.content):
            return True
        target = self.reference
        return (target is not None and target.author == fake.bot
                and target.interaction_id is None and fake.bot in self.mentions)

    def payload(self, fake: FakeDiscord, *, viewer_has_content: bool = True) -> dict[str, Any]:
        """Message object; content hidden when the viewer lacks the message-content intent."""
        show = viewer_has_content or self.content_visible(fake)
        data: dict[str, Any] = {
            "id": str(self.id), "channel_id": str(self.channel_id), "author": self.author.payload(),
            "content": self.content if show else "", "timestamp": iso_now(),
            "edited_timestamp": iso_now() if self.edits else None, "tts": False,
            "mention_everyone": "everyone" in self.pings(),
            "mentions": [u.payload() for u in self.mentions], "mention_roles": [],
            "attachments": [fake.attachment_payload(self.channel_id, f) for f in self.attachments]
            if show else [],
            "embeds": self.embeds if show else [], "pinned": False,
            "type": 19 if self.reference else 0, "flags": self.flags,
            "components": self.components if show else []}
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.author.bot:
            data["application_id"] = str(fake.bot.id)
        if self.interaction_id is not None:
            data["webhook_id"] = str(fake.bot.id)
        if self.reference is not None:
            data["message_reference"] = {"message_id": str(self.reference.id),
                                         "channel_id": str(self.reference.channel_id)}
            data["referenced_message"] = None if self.reference.deleted else (
                self.reference.payload(fake, viewer_has_content=viewer_has_content))
        return data


@dataclass
class FakeInteraction:
    """One INTERACTION_CREATE and what the bot did with it."""

    id: int
    token: str
    type: int
    user: FakeUser
    guild: FakeGuild | None
    channel: FakeChannel
    data: dict[str, Any]
    created: float
    size_limit: int
    message: FakeMessage | None = None
    acked: int | None = None
    original: FakeMessage | None = None
    modal: dict[str, Any] | None = None


@dataclass
class Event:
    """Something seen on the wire: message, edit, delete, ack, modal, sync, error, ready."""

    seq: int
    kind: str
    message: FakeMessage | None = None
    interaction: FakeInteraction | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


class FakeDiscord:
    """Gateway + REST + CDN on 127.0.0.1; see the module docstring."""

    def __init__(self, *, token: str = "test-token", ack_timeout: float = 3.0,
                 token_life: float = 15 * 60, upload_limit: int = 10 * MIB,
                 advertised_limit: int | None = None, portal_intents: int = 0) -> None:
        self.token = token
        self.ack_timeout = ack_timeout
        self.token_life = token_life
        self.upload_limit = upload_limit
        #: What interactions claim as ``attachment_size_limit`` (a lie, to test refusals).
        self.advertised_limit = advertised_limit or upload_limit
        self.bot = FakeUser(snowflake(), "Imagine", bot=True)
        self.owner = FakeUser(snowflake(), "Owner")
        self.guild = FakeGuild(snowflake(), "Test Guild")
        self.channel = FakeChannel(snowflake(), "general", self.guild.id)
        self.guild.channels.append(self.channel)
        self.guilds: dict[int, FakeGuild] = {self.guild.id: self.guild}
        self.channels: dict[int, FakeChannel] = {self.channel.id: self.channel}
        self.messages: dict[int, FakeMessage] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.files: dict[int, FakeFile] = {}
        self.commands: list[dict[str, Any]] = []
        self.events: list[Event] = []
        self.intents = 0
        #: Privileged intents switched on for the app in the Developer Portal (none by default).
        self.portal_intents = portal_intents
        self.base = ""
        self._sockets: set[web.WebSocketResponse] = set()
        #: Each sharded connection's ``[shard_id, num_shards]`` from its IDENTIFY.
        self.shards: dict[web.WebSocketResponse, tuple[int, int]] = {}
        #: What GET /gateway/bot recommends.
        self.recommended_shards = 1
        self._seq = 0
        self._changed = asyncio.Condition()
        self._rate_limits: list[tuple[str, float]] = []
        #: Set by :meth:`refuse_uploads`: the refusal every upload gets from then on.
        self.upload_refusal: tuple[int, int, str] | None = None
        self._runner: web.AppRunner | None = None

    # ----- lifecycle -------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """What ``[discord] api_base_url`` should be."""
        return f"{self.base}/api/v10"

    @property
    def gateway_url(self) -> str:
        """What ``[discord] gateway_url`` should be."""
        return self.base.replace("http://", "ws://") + "/gateway"

    async def start(self) -> FakeDiscord:
        """Listen on a free loopback port."""
        app = web.Application(client_max_size=256 * MIB)
        _Routes(self).install(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        """Close sockets and stop listening."""
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----- world -----------------------------------------------------------------------------

    def user(self, name: str) -> FakeUser:
        """A new person."""
        return FakeUser(snowflake(), name)

    def add_guild(self, name: str, *, thread: bool = False) -> FakeGuild:
        """Another guild with a #general channel (and a thread under it when asked)."""
        guild = FakeGuild(snowflake(), name)
        channel = FakeChannel(snowflake(), "general", guild.id)
        guild.channels.append(channel)
        if thread:
            guild.channels.append(FakeChannel(snowflake(), "a thread", guild.id, 11, channel.id))
        self.guilds[guild.id] = guild
        for ch in guild.channels:
            self.channels[ch.id] = ch
        return guild

    def dm(self, user: FakeUser) -> FakeChannel:
        """The DM channel between ``user`` and the bot."""
        for ch in self.channels.values():
            if ch.type == 1 and ch.recipient == user:
                return ch
        channel = FakeChannel(snowflake(), user.name, None, 1, recipient=user)
        self.channels[channel.id] = channel
        return channel

    def attachment_payload(self, channel_id: int, f: FakeFile) -> dict[str, Any]:
        """Attachment object pointing at the fake CDN."""
        self.files[f.id] = f
        url = f"{self.base}/cdn/attachments/{channel_id}/{f.id}/{f.filename}"
        data: dict[str, Any] = {"id": str(f.id), "filename": f.filename, "size": f.size,
                                "url": url, "proxy_url": url, "content_type": f.content_type}
        dims = f.dimensions() if f.content_type.startswith("image/") else None
        if dims:
            data["width"], data["height"] = dims
        return data

    def rate_limit_once(self, path_fragment: str, retry_after: float = 0.05) -> None:
        """The next request whose path contains ``path_fragment`` gets a 429 (with Via)."""
        self._rate_limits.append((path_fragment, retry_after))

    def refuse_uploads(self, status: int = 403, code: int = 50013,
                       message: str = "Missing Permissions") -> None:
        """Refuse every upload from now on (the bot lost Attach Files in every channel)."""
        self.upload_refusal = (status, code, message)

    def take_rate_limit(self, path: str) -> float | None:
        """Consume a pending 429 for ``path``: its retry_after (None: no 429 pending)."""
        for pending in self._rate_limits:
            if pending[0] in path:
                self._rate_limits.remove(pending)
                return pending[1]
        return None

    # ----- events ----------------------------------------------------------------------------

    async def record(self, kind: str, *, message: FakeMessage | None = None,
                     interaction: FakeInteraction | None = None, **data: Any) -> Event:
        """Append an event (with a snapshot of the message's content) and wake waiters."""
        if message is not None:
            data.setdefault("content", message.text)
        event = Event(len(self.events) + 1, kind, message, interaction, data)
        self.events.append(event)
        async with self._changed:
            self._changed.notify_all()
        return event

    def mark(self) -> int:
        """The current event count, for ``wait_for(since=...)``."""
        return len(self.events)

    @property
    def errors(self) -> list[Event]:
        """Requests the fake rejected."""
        return [e for e in self.events if e.kind == "error"]

    async def wait_for(self, kind: str | None, predicate: Callable[[Event], bool] | None = None,
                       *, timeout: float = 10.0, since: int = 0) -> Event:  # noqa: ASYNC109
        """The first event of ``kind`` (None: any) after ``since`` matching ``predicate`` (waits)."""

        def find() -> Event | None:
            for event in self.events[since:]:
                if kind in (None, event.kind) and (predicate is None or predicate(event)):
                    return event
            return None

        async with asyncio.timeout(timeout), self._changed:
            while (found := find()) is None:
                await self._changed.wait()
        return found

    def visible(self, *, channel: FakeChannel | None = None,
                viewer: FakeUser | None = None) -> list[FakeMessage]:
        """Messages currently shown in ``channel`` (ephemeral ones only to their viewer)."""
        out = []
        for msg in self.messages.values():
            if msg.deleted or (channel is not None and msg.channel_id != channel.id):
                continue
            if msg.ephemeral and msg.interaction_id is not None:
                ix = self.interactions.get(msg.interaction_id)
                if viewer is None or ix is None or ix.user != viewer:
                    continue
            out.append(msg)
        return out

    # ----- gateway ---------------------------------------------------------------------------

    async def send(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        """One TEXT frame."""
        await ws.send_str(json.dumps(payload))

    def shard_of(self, guild_id: int, shards: int) -> int:
        """Discord's rule: ``shard_id = (guild_id >> 22) % num_shards``
        (https://discord.com/developers/docs/events/gateway#sharding)."""
        return (guild_id >> 22) % shards

    def _receives(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> bool:
        """A guild's events go to its shard only; DMs "will only be sent to shard 0" (same page)."""
        shard = self.shards.get(ws)
        if shard is None:
            return True
        guild = data.get("guild_id")
        return shard[0] == (self.shard_of(int(guild), shard[1]) if guild else 0)

    async def dispatch(self, name: str, data: dict[str, Any]) -> None:
        """A DISPATCH to every connected client (to the guild's shard when sharded)."""
        if not self._sockets:
            raise AssertionError("no discord.py client is connected to the fake gateway")
        for ws in [w for w in self._sockets if self._receives(w, data)]:
            self._seq += 1
            with contextlib.suppress(ConnectionError):
                await self.send(ws, {"op": 0, "t": name, "s": self._seq, "d": data})

    def add_socket(self, ws: web.WebSocketResponse) -> None:
        """Track a gateway connection."""
        self._sockets.add(ws)

    def drop_socket(self, ws: web.WebSocketResponse) -> None:
        """Forget a gateway connection."""
        self._sockets.discard(ws)
        self.shards.pop(ws, None)

    async def wait_ready(self, since: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until a client identified after event ``since`` and got READY and its guilds."""
        await self.wait_for("ready", timeout=timeout, since=since)

    # ----- what users do ---------------------------------------------------------------------

    def _new_interaction(self, type_: int, data: dict[str, Any], user: FakeUser,
                         channel: FakeChannel | None, message: FakeMessage | None = None
                         ) -> FakeInteraction:
        channel = channel or self.channel
        guild = self.guilds.get(channel.guild_id) if channel.guild_id else None
        iid = snowflake()
        ix = FakeInteraction(iid, f"ixt.{iid}.{secrets.token_hex(12)}", type_, user, guild,
                             channel, data, time.monotonic(), self.upload_limit, message)
        self.interactions[iid] = ix
        return ix

    def _interaction_payload(self, ix: FakeInteraction, locale: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(ix.id), "application_id": str(self.bot.id), "type": ix.type,
            "token": ix.token, "version": 1, "attachment_size_limit": self.advertised_limit,
            "data": ix.data, "locale": locale, "channel_id": str(ix.channel.id),
            "channel": ix.channel.payload(), "entitlements": [],
            "app_permissions": str(MEMBER_PERMISSIONS | MANAGE_MESSAGES)}
        if ix.guild is not None:
            payload.update(guild_id=str(ix.guild.id), guild_locale="en-US",
                           member=ix.guild.member(ix.user), context=0,
                           authorizing_integration_owners={"0": str(ix.guild.id)})
        else:
            payload.update(user=ix.user.payload(), context=1,
                           authorizing_integration_owners={"0": str(ix.user.id)})
        if ix.message is not None:
            payload["message"] = ix.message.payload(self)
        return payload

    async def _send_interaction(self, ix: FakeInteraction, locale: str) -> FakeInteraction:
        ix.created = time.monotonic()
        await self.dispatch("INTERACTION_CREATE", self._interaction_payload(ix, locale))
        return ix

    def _command_id(self, name: str) -> str:
        for cmd in self.commands:
            if cmd["name"] == name:
                return str(cmd["id"])
        return str(snowflake())

    async def slash(self, name: str, *, user: FakeUser, channel: FakeChannel | None = None,
                    locale: str = "en-US", attachments: Iterable[bytes | FakeFile] = (),
                    subcommand: str | None = None, options: dict[str, Any] | None = None,
                    **more: Any) -> FakeInteraction:
        """``/name option:value``; ``attachments`` fill image1..N; ``options`` for clashing names."""
        options = {**(options or {}), **more}
        opts: list[dict[str, Any]] = []
        resolved: dict[str, dict[str, Any]] = {}
        channel = channel or self.channel
        for index, item in enumerate(attachments, start=1):
            f = item if isinstance(item, FakeFile) else FakeFile(f"image{index}.png", item)
            resolved.setdefault("attachments", {})[str(f.id)] = self.attachment_payload(
                channel.id, f)
            opts.append({"name": f"image{index}", "type": 11, "value": str(f.id)})
        for key, value in options.items():
            if isinstance(value, FakeUser):
                resolved.setdefault("users", {})[str(value.id)] = value.payload()
                guild = self.guilds.get(channel.guild_id or 0)
                if guild is not None:
                    member = guild.member(value)
                    member.pop("user")
                    resolved.setdefault("members", {})[str(value.id)] = member
                opts.append({"name": key, "type": 6, "value": str(value.id)})
            elif isinstance(value, bool):
                opts.append({"name": key, "type": 5, "value": value})
            elif isinstance(value, int):
                opts.append({"name": key, "type": 4, "value": value})
            else:
                opts.append({"name": key, "type": 3, "value": str(value)})
        if subcommand is not None:
            opts = [{"name": subcommand, "type": 1, "options": opts}]
        data: dict[str, Any] = {"id": self._command_id(name), "name": name, "type": 1,
                                "options": opts}
        if resolved:
            data["resolved"] = resolved
        ix = self._new_interaction(2, data, user, channel)
        return await self._send_interaction(ix, locale)

    async def context_menu(self, name: str, message: FakeMessage, *, user: FakeUser,
                           locale: str = "en-US") -> FakeInteraction:
        """A message context-menu command on ``message`` (it arrives with full content)."""
        data = {"id": self._command_id(name), "name": name, "type": 3,
                "target_id": str(message.id),
                "resolved": {"messages": {str(message.id): message.payload(self)}}}
        channel = self.channels[message.channel_id]
        ix = self._new_interaction(2, data, user, channel)
        return await self._send_interaction(ix, locale)

    async def submit_modal(self, shown: FakeInteraction, values: dict[str, str], *,
                           locale: str = "en-US") -> FakeInteraction:
        """Fill in and submit the modal the bot showed in answer to ``shown``."""
        assert shown.modal is not None, "the bot showed no modal for this interaction"

        def fill(comp: dict[str, Any]) -> dict[str, Any]:
            if comp.get("type") == 1:
                return {"type": 1, "components": [fill(c) for c in comp["components"]]}
            if comp.get("type") == 18:
                return {"type": 18, "component": fill(comp["component"])}
            return {"type": comp["type"], "custom_id": comp["custom_id"],
                    "value": values.get(comp["custom_id"], "")}

        data = {"custom_id": shown.modal["custom_id"],
                "components": [fill(c) for c in shown.modal["components"]]}
        ix = self._new_interaction(5, data, shown.user, shown.channel, shown.message)
        return await self._send_interaction(ix, locale)

    def find_message(self, custom_id: str) -> FakeMessage:
        """The newest live message carrying ``custom_id``."""
        for msg in reversed(list(self.messages.values())):
            if not msg.deleted and custom_id in msg.custom_ids():
                return msg
        raise AssertionError(f"no message has a component {custom_id!r}")

    async def press(self, custom_id: str, *, user: FakeUser, message: FakeMessage | None = None,
                    locale: str = "en-US") -> FakeInteraction:
        """Press a button."""
        message = message or self.find_message(custom_id)
        data = {"custom_id": custom_id, "component_type": 2}
        ix = self._new_interaction(3, data, user, self.channels[message.channel_id], message)
        return await self._send_interaction(ix, locale)

    async def select(self, custom_id: str, values: list[str], *, user: FakeUser,
                     message: FakeMessage | None = None, locale: str = "en-US"
                     ) -> FakeInteraction:
        """Choose in a string select menu."""
        message = message or self.find_message(custom_id)
        data = {"custom_id": custom_id, "component_type": 3, "values": values}
        ix = self._new_interaction(3, data, user, self.channels[message.channel_id], message)
        return await self._send_interaction(ix, locale)

    async def user_message(self, content: str, *, user: FakeUser,
                           channel: FakeChannel | None = None,
                           reply_to: FakeMessage | None = None, mention_bot: bool = True,
                           ping: bool = True, attachments: Iterable[bytes | FakeFile] = (),
                           embed_images: Iterable[bytes] = ()) -> FakeMessage:
        """``user`` posts; ``embed_images`` become link previews.

        ``mention_bot`` writes ``@Imagine`` into the message (outside DMs); ``ping`` is the
        client's "ping on reply", which mentions the replied-to message's author.
        """
        channel = channel or (self.channels[reply_to.channel_id] if reply_to else self.channel)
        files = [a if isinstance(a, FakeFile) else FakeFile(f"photo{i}.png", a)
                 for i, a in enumerate(attachments, start=1)]
        embeds = []
        for data in embed_images:
            hosted = self.attachment_payload(channel.id, FakeFile("preview.png", data))
            embeds.append({"type": "image", "url": hosted["url"], "thumbnail": {
                "url": hosted["url"], "proxy_url": hosted["proxy_url"],
                "width": hosted.get("width", 0), "height": hosted.get("height", 0)}})
        if mention_bot and channel.guild_id is not None and f"<@{self.bot.id}>" not in content:
            content = f"<@{self.bot.id}> {content}"
        mentions = [self.bot] if mention_bot else []
        if reply_to is not None and ping and reply_to.author not in mentions:
            mentions.append(reply_to.author)
        msg = FakeMessage(snowflake(), channel.id, channel.guild_id, user, content,
                          attachments=files, embeds=embeds, mentions=mentions,
                          reference=reply_to)
        self.messages[msg.id] = msg
        await self.record("message", message=msg)
        payload = msg.payload(self, viewer_has_content=bool(self.intents & MESSAGE_CONTENT_INTENT))
        guild = self.guilds.get(channel.guild_id or 0)
        if guild is not None:
            member = guild.member(user)
            member.pop("user")
            payload["member"] = member
        await self.dispatch("MESSAGE_CREATE", payload)
        return msg


def validate_commands(commands: list[dict[str, Any]]) -> str | None:
    """What Discord would reject in a bulk overwrite (names, descriptions, localizations)."""
    for cmd in commands:
        kind = cmd.get("type", 1)
        names = [cmd["name"], *cmd.get("name_localizations", {}).values()] if cmd.get(
            "name_localizations") else [cmd["name"]]
        for name in names:
            if kind == 1 and (not _NAME_RE.match(name) or name != name.lower()):
                return f"invalid command name {name!r}"
            if kind != 1 and not 1 <= len(name) <= 32:
                return f"invalid context menu name {name!r}"
        descriptions = [cmd.get("description", "")]
        descriptions += list((cmd.get("description_localizations") or {}).values())
        if kind == 1 and any(not 1 <= len(d) <= 100 for d in descriptions):
            return f"invalid description on {cmd['name']!r}"
        if kind == 1:
            problem = validate_commands([{**o, "type": 1} for o in cmd.get("options", [])])
            if problem:
                return problem
    return None


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py parses JSON only when the content type is exactly "application/json".
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json", **(headers or {})})


class _Routes:
    """The HTTP and websocket handlers of a FakeDiscord."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.f = fake

    def install(self, app: web.Application) -> None:
        """Register every route."""
        r = app.router
        api = "/api/v10"
        r.add_get("/gateway", self.gateway)
        r.add_get(f"{api}/gateway", self.get_gateway)
        r.add_get(f"{api}/gateway/bot", self.get_gateway)
        r.add_get(f"{api}/users/@me", self.me)
        r.add_get(f"{api}/oauth2/applications/@me", self.app_info)
        r.add_put(f"{api}/applications/{{app}}/commands", self.sync)
        r.add_put(f"{api}/applications/{{app}}/guilds/{{guild}}/commands", self.sync)
        r.add_get(f"{api}/applications/{{app}}/commands", self.get_commands)
        r.add_post(f"{api}/interactions/{{id}}/{{token}}/callback", self.callback)
        r.add_post(f"{api}/webhooks/{{app}}/{{token}}", self.followup)
        r.add_route("*", f"{api}/webhooks/{{app}}/{{token}}/messages/{{mid}}", self.webhook_message)
        r.add_post(f"{api}/channels/{{cid}}/messages", self.create_message)
        r.add_route("*", f"{api}/channels/{{cid}}/messages/{{mid}}", self.channel_message)
        r.add_post(f"{api}/channels/{{cid}}/typing", self.typing)
        r.add_get("/cdn/attachments/{cid}/{fid}/{name}", self.cdn)
        app.middlewares.append(self.middleware)

    async def error(self, status: int, code: int, message: str, request: web.Request
                    ) -> web.Response:
        """A Discord error body, recorded as an ``error`` event."""
        await self.f.record("error", status=status, code=code, text=message,
                            path=request.path, method=request.method)
        return _json({"code": code, "message": message}, status)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Rate limits on demand, bot authorization, unknown routes."""
        path = request.path
        wait = self.f.take_rate_limit(path) if path.startswith("/api/") else None
        if wait is not None:
            # https://discord.com/developers/docs/topics/rate-limits#exceeding-a-rate-limit
            await self.f.record("rate_limited", path=path)
            return _json({"message": "You are being rate limited.", "retry_after": wait,
                          "global": False}, 429,
                         {"Via": "1.1 google", "Retry-After": str(max(1, math.ceil(wait))),
                          "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                          "X-RateLimit-Reset-After": str(wait), "X-RateLimit-Bucket": "fake",
                          "X-RateLimit-Scope": "user"})
        token_routes = ("/api/v10/webhooks/", "/api/v10/interactions/")
        if path.startswith("/api/") and not path.startswith(token_routes) and (
                request.headers.get("Authorization") != f"Bot {self.f.token}"):
            return await self.error(401, 0, "401: Unauthorized", request)
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPNotFound:
            return await self.error(404, 0, "404: Not Found", request)
        return response

    # ----- gateway ---------------------------------------------------------------------------

    async def gateway(self, request: web.Request) -> web.StreamResponse:
        """HELLO, then IDENTIFY -> READY + GUILD_CREATEs; heartbeats acknowledged."""
        f = self.f
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        f.add_socket(ws)
        try:
            await f.send(ws, {"op": 10, "d": {"heartbeat_interval": 41250}})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op = frame.get("op")
                if op == 1:
                    await f.send(ws, {"op": 11})
                elif op == 2:
                    await self._identify(ws, frame["d"])
                elif op == 6:
                    f._seq += 1
                    await f.send(ws, {"op": 0, "t": "RESUMED", "s": f._seq, "d": {}})
        finally:
            f.drop_socket(ws)
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        f = self.f
        if data.get("token") != f.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        f.intents = int(data.get("intents", 0))
        if f.intents & PRIVILEGED_INTENTS & ~f.portal_intents:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard = data.get("shard") or [0, 1]
        if not (isinstance(shard, list) and len(shard) == 2 and 0 <= shard[0] < shard[1]):
            await ws.close(code=4010, message=b"Invalid shard.")  # the gateway's close code
            return
        if data.get("shard") is not None:
            f.shards[ws] = (int(shard[0]), int(shard[1]))
        guilds = [g for g in f.guilds.values() if f.shard_of(g.id, shard[1]) == shard[0]]
        me = {**f.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0}
        ready = {"v": 10, "user": me, "session_id": secrets.token_hex(16),
                 "resume_gateway_url": f.gateway_url, "application": {"id": str(f.bot.id),
                                                                      "flags": 0},
                 "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                 "private_channels": [], "relationships": [], "shard": shard}
        f._seq += 1
        await f.send(ws, {"op": 0, "t": "READY", "s": f._seq, "d": ready})
        for guild in guilds:
            f._seq += 1
            await f.send(ws, {"op": 0, "t": "GUILD_CREATE", "s": f._seq,
                              "d": self._guild(guild)})
        await f.record("ready", intents=f.intents, shard=shard)

    def _guild(self, guild: FakeGuild) -> dict[str, Any]:
        everyone = {"id": str(guild.id), "name": "@everyone", "permissions": str(
            MEMBER_PERMISSIONS), "position": 0, "color": 0, "hoist": False, "managed": False,
                    "mentionable": False, "flags": 0}
        channels = [c.payload() for c in guild.channels if c.type != 11]
        threads = [c.payload() for c in guild.channels if c.type == 11]
        return {"id": str(guild.id), "name": guild.name, "icon": None,
                "owner_id": str(self.f.owner.id), "features": [], "roles": [everyone],
                "emojis": [], "stickers": [], "channels": channels, "threads": threads,
                "members": [{k: v for k, v in guild.member(self.f.bot).items()
                             if k != "permissions"}],
                "member_count": 2, "large": False, "unavailable": False, "premium_tier": 0,
                "preferred_locale": "en-US", "verification_level": 0,
                "default_message_notifications": 0, "explicit_content_filter": 0,
                "mfa_level": 0, "nsfw_level": 0, "system_channel_flags": 0,
                "joined_at": iso_now(), "voice_states": [], "presences": [],
                "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": []}

    # ----- start-up and commands -------------------------------------------------------------

    async def get_gateway(self, request: web.Request) -> web.Response:
        """Only sharded clients ask; a plain client connects to its gateway URL directly."""
        return _json({"url": self.f.gateway_url, "shards": self.f.recommended_shards,
                      "session_start_limit": {
            "total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}})

    async def me(self, request: web.Request) -> web.Response:
        """The bot user."""
        return _json({**self.f.bot.payload(), "verified": True, "mfa_enabled": False,
                      "flags": 0})

    async def app_info(self, request: web.Request) -> web.Response:
        """The application."""
        return _json({"id": str(self.f.bot.id), "name": self.f.bot.name, "description": "",
                      "icon": None, "bot_public": True, "bot_require_code_grant": False,
                      "owner": self.f.owner.payload(), "verify_key": "0" * 64, "flags": 0,
                      "team": None, "summary": "", "bot": self.f.bot.payload()})

    async def sync(self, request: web.Request) -> web.Response:
        """Bulk overwrite; the answer carries ids and a description on every command."""
        body = await request.json()
        problem = validate_commands(body)
        if problem:
            return await self.error(400, 50035, f"Invalid Form Body: {problem}", request)
        out = [{"id": self.f._command_id(c["name"]), "application_id": str(self.f.bot.id),
                "version": str(snowflake()), "default_member_permissions": None,
                **c, "type": c.get("type", 1), "description": c.get("description", "")}
               for c in body]
        self.f.commands = out
        await self.f.record("sync", commands=out, guild=request.match_info.get("guild"))
        return _json(out)

    async def get_commands(self, request: web.Request) -> web.Response:
        """The synced commands."""
        return _json(self.f.commands)

    # ----- bodies ----------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> tuple[dict[str, Any], list[FakeFile]]:
        """JSON, or multipart with ``payload_json`` and ``files[n]`` parts."""
        if request.content_type != "multipart/form-data":
            raw = await request.read()
            return (json.loads(raw) if raw else {}), []
        payload: dict[str, Any] = {}
        files: list[FakeFile] = []
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            data = await part.read()
            if part.name == "payload_json":
                payload = json.loads(data)
            elif part.name.startswith("files["):
                files.append(FakeFile(part.filename or "file", bytes(data)))
        return payload, files

    async def _too_large(self, request: web.Request, files: list[FakeFile],
                         limit: int) -> web.Response | None:
        if len(files) > 10:
            return await self.error(400, 50035, "Invalid Form Body: too many files", request)
        if files and self.f.upload_refusal is not None:
            return await self.error(*self.f.upload_refusal, request)
        for f in files:
            if f.size > limit:
                return await self.error(413, 40005, "Request entity too large", request)
        return None

    async def _refused(self, request: web.Request, payload: dict[str, Any],
                       files: list[FakeFile], limit: int, *, create: bool = False,
                       target: FakeMessage | None = None) -> web.Response | None:
        """Upload limit, body limits and (for a new message) emptiness, as Discord checks them.

        ``target``: the message an edit changes (its v2 flag stays; its kept files count).
        """
        if (rejected := await self._too_large(request, files, limit)) is not None:
            return rejected
        before = target.flags if target is not None else 0
        problem = discord_rules.flag_removed(before, payload)
        names = {f.filename for f in files}
        if target is not None:
            names |= {f.filename for f in self._kept(target, payload)}
        v2 = bool((before | int(payload.get("flags") or 0)) & IS_COMPONENTS_V2)
        if problem is None and v2 and target is not None and target.content and (
                payload.get("content", target.content)):
            problem = discord_rules.v2_problem({"content": target.content}, frozenset())
        problem = problem or discord_rules.body_problem(payload, v2=v2, files=frozenset(names))
        if problem is None and create:
            problem = discord_rules.empty_problem(
                str(payload.get("content") or ""), payload.get("embeds") or [], len(files),
                payload.get("components") or [], payload)
        return None if problem is None else await self.error(*problem, request)

    @staticmethod
    def _kept(msg: FakeMessage, payload: dict[str, Any]) -> list[FakeFile]:
        """The files an edit keeps: those its ``attachments`` list names, else all of them."""
        if "attachments" not in payload:
            return list(msg.attachments)
        keep = {str(a.get("id")) for a in payload.get("attachments") or []}
        return [a for a in msg.attachments if str(a.id) in keep]

    def _apply(self, msg: FakeMessage, payload: dict[str, Any], files: list[FakeFile]) -> None:
        """Apply a create/edit body to ``msg`` (a v2 flag, once set, stays)."""
        if "flags" in payload:
            settable = SETTABLE_FLAGS & ~EPHEMERAL  # ephemerality is fixed at creation
            msg.flags = (msg.flags & (EPHEMERAL | IS_COMPONENTS_V2)) | (
                int(payload.get("flags") or 0) & settable)
        if "content" in payload:
            msg.content = payload["content"] or ""
        if "components" in payload:
            msg.components = payload["components"] or []
        if "embeds" in payload:
            msg.embeds = payload["embeds"] or []
        if "allowed_mentions" in payload:
            msg.allowed_mentions = payload["allowed_mentions"]
        if "attachments" in payload or files:
            msg.attachments = self._kept(msg, payload) + files
        if msg.v2:
            msg.components = self._resolved(msg)

    def _resolved(self, msg: FakeMessage) -> list[dict[str, Any]]:
        """Components with ``attachment://`` media resolved to the CDN, as Discord answers."""
        files = {f"attachment://{f.filename}": f for f in msg.attachments}

        def resolve(comp: Any) -> Any:
            if isinstance(comp, list):
                return [resolve(c) for c in comp]
            if not isinstance(comp, dict):
                return comp
            out = {k: resolve(v) for k, v in comp.items()}
            found = files.get(str(comp.get("url", "")))
            if found is not None:
                hosted = self.f.attachment_payload(msg.channel_id, found)
                out.update(url=hosted["url"], proxy_url=hosted["proxy_url"],
                           attachment_id=str(found.id), content_type=found.content_type)
            return out

        return [resolve(c) for c in msg.components]

    # ----- interactions ----------------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.Response:
        """The interaction response: within ``ack_timeout``, once."""
        f = self.f
        ix = f.interactions.get(int(request.match_info["id"]))
        if ix is None or ix.token != request.match_info["token"] or (
                time.monotonic() - ix.created > f.ack_timeout):
            return await self.error(404, 10062, "Unknown interaction", request)
        if ix.acked is not None:
            return await self.error(400, 40060, "Interaction has already been acknowledged.",
                                    request)
        payload, files = await self._body(request)
        kind = payload["type"]
        data = payload.get("data") or {}
        if (problem := discord_rules.response_problem(ix.type, kind)) is not None:
            return await self.error(*problem, request)
        if (rejected := await self._refused(request, data if kind in (4, 7) else {}, files,
                                            ix.size_limit, create=kind == 4,
                                            target=ix.message if kind == 7 else None)
                ) is not None:
            return rejected
        ix.acked = kind
        await f.record("ack", interaction=ix, type=kind, flags=data.get("flags", 0))
        msg: FakeMessage | None = None
        if kind in (4, 5):
            msg = FakeMessage(snowflake(), ix.channel.id, ix.channel.guild_id, f.bot,
                              flags=int(data.get("flags") or 0) & SETTABLE_FLAGS,
                              interaction_id=ix.id, via="response", loading=kind == 5)
            self._apply(msg, data, files)
            f.messages[msg.id] = msg
            ix.original = msg
            await f.record("message", message=msg, interaction=ix)
        elif kind in (6, 7):
            ix.original = ix.message
            if kind == 7 and ix.message is not None:
                self._apply(ix.message, data, files)
                ix.message.edits += 1
                await f.record("edit", message=ix.message, interaction=ix)
        elif kind == 9:
            ix.modal = data
            await f.record("modal", interaction=ix, modal=data)
        answer: dict[str, Any] = {"interaction": {
            "id": str(ix.id), "type": ix.type, "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(msg and msg.ephemeral)}}
        if msg is not None:
            answer["interaction"]["response_message_id"] = str(msg.id)
            answer["resource"] = {"type": kind, "message": msg.payload(f)}
        else:
            answer["resource"] = {"type": kind}
        return _json(answer)

    async def _ix(self, request: web.Request) -> FakeInteraction | web.Response:
        """The interaction a webhook token belongs to, if it is still valid."""
        f = self.f
        token = request.match_info["token"]
        ix = next((i for i in f.interactions.values() if i.token == token), None)
        if ix is None or request.match_info["app"] != str(f.bot.id) or ix.acked is None:
            return await self.error(404, 10015, "Unknown Webhook", request)
        if time.monotonic() - ix.created > f.token_life:
            return await self.error(401, 50027, "Invalid Webhook Token", request)
        return ix

    async def followup(self, request: web.Request) -> web.Response:
        """A follow-up; the first one while the response still "thinks" replaces it."""
        f = self.f
        ix = await self._ix(request)
        if isinstance(ix, web.Response):
            return ix
        payload, files = await self._body(request)
        if (rejected := await self._refused(request, payload, files, ix.size_limit,
                                            create=True)) is not None:
            return rejected
        original = ix.original
        if original is not None and original.loading and not original.deleted:
            # Discord: a follow-up that does not resolve the loading state first resolves it,
            # and keeps the deferred response's ephemeral flag.
            self._apply(original, payload, files)
            original.loading = False
            original.edits += 1
            await f.record("edit", message=original, interaction=ix)
            return _json(original.payload(f))
        msg = FakeMessage(snowflake(), ix.channel.id, ix.channel.guild_id, f.bot,
                          flags=int(payload.get("flags") or 0) & SETTABLE_FLAGS,
                          interaction_id=ix.id, via="followup")
        self._apply(msg, payload, files)
        f.messages[msg.id] = msg
        await f.record("message", message=msg, interaction=ix)
        return _json(msg.payload(f))

    async def webhook_message(self, request: web.Request) -> web.Response:
        """GET / PATCH / DELETE of @original or a follow-up."""
        f = self.f
        ix = await self._ix(request)
        if isinstance(ix, web.Response):
            return ix
        mid = request.match_info["mid"]
        msg = ix.original if mid == "@original" else f.messages.get(int(mid))
        if msg is None or msg.deleted:
            return await self.error(404, 10008, "Unknown Message", request)
        if request.method == "DELETE":
            msg.deleted = True
            await f.record("delete", message=msg, interaction=ix)
            return web.Response(status=204)
        if request.method == "PATCH":
            payload, files = await self._body(request)
            if (rejected := await self._refused(request, payload, files, ix.size_limit,
                                                target=msg)) is not None:
                return rejected
            self._apply(msg, payload, files)
            msg.loading = False
            msg.edits += 1
            await f.record("edit", message=msg, interaction=ix)
        return _json(msg.payload(f))

    # ----- channels --------------------------------------------------------------------------

    async def create_message(self, request: web.Request) -> web.Response:
        """A bot message in a channel, thread or DM."""
        f = self.f
        channel = f.channels.get(int(request.match_info["cid"]))
        if channel is None:
            return await self.error(404, 10003, "Unknown Channel", request)
        payload, files = await self._body(request)
        if (rejected := await self._refused(request, payload, files, f.upload_limit,
                                            create=True)) is not None:
            return rejected
        ref = payload.get("message_reference") or {}
        reference = f.messages.get(int(ref["message_id"])) if ref.get("message_id") else None
        if reference is not None and reference.deleted:
            reference = None
        if ref.get("message_id") and (problem := discord_rules.reference_problem(
                reference is not None, ref)) is not None:
            return await self.error(*problem, request)
        msg = FakeMessage(snowflake(), channel.id, channel.guild_id, f.bot, reference=reference)
        self._apply(msg, payload, files)
        f.messages[msg.id] = msg
        await f.record("message", message=msg)
        return _json(msg.payload(f))

    async def channel_message(self, request: web.Request) -> web.Response:
        """GET / PATCH / DELETE of a channel message (ephemeral ones are not in the channel)."""
        f = self.f
        msg = f.messages.get(int(request.match_info["mid"]))
        if msg is None or msg.deleted or msg.ephemeral or (
                msg.channel_id != int(request.match_info["cid"])):
            return await self.error(404, 10008, "Unknown Message", request)
        if request.method == "GET":
            has_content = bool(f.intents & MESSAGE_CONTENT_INTENT)
            return _json(msg.payload(f, viewer_has_content=has_content))
        if msg.author != f.bot and request.method == "PATCH":
            return await self.error(403, 50005, "Cannot edit a message authored by another user",
                                    request)
        if request.method == "DELETE":
            msg.deleted = True
            await f.record("delete", message=msg)
            return web.Response(status=204)
        payload, files = await self._body(request)
        if (rejected := await self._refused(request, payload, files, f.upload_limit,
                                            target=msg)) is not None:
            return rejected
        self._apply(msg, payload, files)
        msg.edits += 1
        await f.record("edit", message=msg)
        return _json(msg.payload(f))

    async def typing(self, request: web.Request) -> web.Response:
        """Typing indicator."""
        return web.Response(status=204)

    async def cdn(self, request: web.Request) -> web.Response:
        """Attachment bytes."""
        found = self.f.files.get(int(request.match_info["fid"]))
        if found is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=found.data, headers={"Content-Type": found.content_type})


# ----- harness: a real discord.py client (through DiscordAdapter) against the fake ------------


def discord_settings(settings_factory: Callable[..., Settings], fake: FakeDiscord,
                     **sections: Any) -> Settings:
    """Settings whose ``[discord]`` points at ``fake``; other sections as given."""
    section = {"enabled": True, "api_base_url": fake.api_url, "gateway_url": fake.gateway_url,
               **sections.pop("discord", {})}
    return settings_factory(discord=section, **sections)


@dataclass
class RunningBot:
    """A started Core and a connected DiscordAdapter."""

    fake: FakeDiscord
    core: Core
    adapter: DiscordAdapter


@asynccontextmanager
async def running_bot(fake: FakeDiscord, settings: Settings, *,
                      providers: dict[str, ImageProvider] | None = None,
                      sync_commands: bool = False) -> AsyncIterator[RunningBot]:
    """Start a Core and the adapter; yield once the client got READY; stop both afterwards."""
    core = build_core(settings, providers=providers)
    await core.start()
    adapter = DiscordAdapter(core.api, token=fake.token, sync_commands=sync_commands)
    stop = asyncio.Event()
    since = fake.mark()
    task = asyncio.create_task(adapter.run(stop), name="adapter")
    ready = asyncio.create_task(fake.wait_ready(since))
    try:
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            ready.cancel()
            task.result()
            raise AssertionError("the adapter stopped before it connected")
        await ready
        yield RunningBot(fake, core, adapter)
    finally:
        stop.set()
        try:
            async with asyncio.timeout(15):
                await task
        finally:
            await core.stop(grace=0)


async def bound_turn(core: Core, message: FakeMessage, timeout: float = 5.0) -> Turn:  # noqa: ASYNC109
    """The turn ``message`` shows, once the adapter has bound it (it binds right after sending)."""
    ref = MessageRef("discord", str(message.channel_id), str(message.id))
    async with asyncio.timeout(timeout):
        # Binding leaves no trace on the wire, so the store is polled.
        while (turn := await core.service.turn_for(ref)) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return turn


async def result_of(fake: FakeDiscord, ix: FakeInteraction, timeout: float = 10.0  # noqa: ASYNC109
                    ) -> FakeMessage:
    """The public result message (with images) that answers ``ix``.

    A job's result is the edit that ends its public deferral; a follow-up when a progress edit
    was given up in flight (or one the test sends itself).
    """

    def shows_result(event: Event) -> bool:
        msg = event.message
        return (event.kind in ("message", "edit") and msg is not None and bool(msg.attachments)
                and msg.interaction_id == ix.id)

    event = await fake.wait_for(None, shows_result, timeout=timeout)
    assert event.message is not None
    return event.message


async def private_answer(fake: FakeDiscord, ix: FakeInteraction, timeout: float = 10.0  # noqa: ASYNC109
                         ) -> FakeMessage:
    """The final text of ``ix``'s private answer: its ephemeral response (after "thinking" and
    progress edits), or the ephemeral follow-up that tells what became of a public job."""

    def settled(event: Event) -> bool:
        msg = event.message
        if event.interaction is not ix or msg is None:
            return False
        if event.kind == "message":
            return msg.via == "followup" and msg.ephemeral
        return (event.kind == "edit" and msg is ix.original and msg.ephemeral
                and not msg.loading and not msg.text.startswith(("⏳", "🎨")))

    event = await fake.wait_for(None, settled, timeout=timeout)
    assert event.message is not None
    return event.message


async def response_of(fake: FakeDiscord, ix: FakeInteraction, timeout: float = 10.0  # noqa: ASYNC109
                      ) -> FakeMessage:
    """The first message created in answer to ``ix`` (e.g. an ephemeral refusal)."""
    event = await fake.wait_for("message", lambda e: e.interaction is ix, timeout=timeout)
    assert event.message is not None
    return event.message
