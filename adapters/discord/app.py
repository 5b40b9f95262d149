"""The Discord adapter: builds the discord.py client, wires the runtime and handlers, runs, stops."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from adapters.discord import commands
from adapters.discord.commands import CatalogTranslator
from adapters.discord.creating import ITEMS as CREATING_ITEMS
from adapters.discord.creating import Creating
from adapters.discord.deliver import Sender
from adapters.discord.handlers import Handlers
from adapters.discord.inbound import log
from adapters.discord.outbox import MAX_WAIT
from adapters.discord.payments import Payments
from adapters.discord.runtime import Runtime
from adapters.discord.takeover import keep_taking_over
from adapters.discord.widgets import DYNAMIC_ITEMS, Press
from bot.api import BotApi, ConfigError

API_BASE = "https://discord.com/api/v10"


def point_at(api_base_url: str | None, gateway_url: str | None) -> tuple[str, yarl.URL]:
    """Aim discord.py at ``api_base_url`` / ``gateway_url``; returns the previous values."""
    # discord.py has no per-client option for either, so this sets the two class attributes it
    # reads: Route.BASE (every REST call, interaction webhooks included) and
    # DiscordWebSocket.DEFAULT_GATEWAY (a plain Client connects there directly, and falls back to
    # it after an invalidated session). Both are process-wide: one Discord connection per process.
    previous = (discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    discord.http.Route.BASE = (api_base_url or API_BASE).rstrip("/")
    if gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    return previous


def restore(previous: tuple[str, yarl.URL]) -> None:
    """Undo :func:`point_at`."""
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = previous


class Tree(app_commands.CommandTree["Client"]):
    """A command tree whose unexpected errors become a short error id, never a traceback."""

    def __init__(self, client: Client, runtime: Runtime) -> None:
        super().__init__(client)
        self._runtime = runtime

    async def on_error(self, interaction: discord.Interaction[Client],
                       error: app_commands.AppCommandError, /) -> None:
        """Hand the failure to the runtime's guard."""
        await self._runtime.fail(interaction, error)


class Client(discord.Client):
    """One gateway connection: its events go to the handlers, nothing else lives here."""

    def __init__(self, api: BotApi, *, sync_commands: bool = False, **shards: Any) -> None:
        # The bot never joins voice: discord.py's start-up warnings about its optional voice
        # libraries (PyNaCl, davey) would only send operators after something they don't need.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        # Intents.default() leaves out the privileged message_content: DMs, @mentions and
        # ping-replies to regular bot messages carry content anyway (inbound.py); an operator
        # may ask for it ([discord] message_content_intent) once the Developer Portal allows it.
        intents = discord.Intents.default()
        intents.message_content = api.settings.discord.message_content_intent
        # A 429 longer than MAX_WAIT raises instead of sleeping in discord.py: a channel post
        # then waits parked, and survives a restart (outbox.py).
        super().__init__(intents=intents, allowed_mentions=discord.AllowedMentions.none(),
                         max_ratelimit_timeout=MAX_WAIT, **shards)
        self.sync_commands = sync_commands
        self.connected = False
        # This adapter's parts, wired once: everything below is handed the runtime explicitly.
        self.runtime = Runtime(api, self, Sender(api, self))
        self.handlers = Handlers(self.runtime)
        self.creating = Creating(self.runtime, self.handlers)  # /describe, /history, n, style
        self.tree = Tree(self, self.runtime)
        self.payments = Payments(self.runtime)
        self._sweep: asyncio.Task[None] | None = None
        self._takeover: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        """Persistent components and commands; sync them with Discord only when asked to."""
        await self.runtime.open()
        self.add_dynamic_items(*DYNAMIC_ITEMS, *CREATING_ITEMS)
        await self.tree.set_translator(CatalogTranslator(self.runtime.api))
        selling = [self.payments.command()] if self.shop_open else []
        commands.register(self.runtime, self.tree, self.handlers,
                          [*selling, *self.creating.commands(commands.ls)],
                          after_settings=self.creating.settings_more)
        # Purchases made while the bot was away wait unconsumed: credited in the background.
        self._sweep = asyncio.create_task(self.payments.sweep(), name="discord-entitlements")
        # Jobs other processes had queued when they stopped (several shard processes).
        self._takeover = asyncio.create_task(keep_taking_over(self.runtime),
                                             name="discord-takeover")
        if self.sync_commands:
            synced = await self.tree.sync()
            log.info("synced %d application commands", len(synced))

    async def close(self) -> None:
        """Disconnect and release the download session."""
        for task in (self._sweep, self._takeover):
            if task is not None:
                task.cancel()
        await super().close()
        await self.runtime.close()

    async def on_connect(self) -> None:
        """Gateway session is up."""
        self.connected = True

    async def on_ready(self) -> None:
        """Logged in and the guild list is loaded: the operator's "it works" line."""
        user = self.user
        log.info("discord: connected as %s (id %s), in %d servers; ready", user,
                 user.id if user else "?", len(self.guilds))

    async def on_resumed(self) -> None:
        """Gateway session resumed."""
        self.connected = True

    async def on_disconnect(self) -> None:
        """Gateway dropped; discord.py reconnects by itself."""
        self.connected = False

    async def on_message(self, message: discord.Message) -> None:
        """Replies to results that mention the bot become edits."""
        await self.handlers.on_message(message)

    @property
    def shop_open(self) -> bool:
        """Whether /buy has anything to offer here."""
        return bool(self.runtime.api.shop.packs("discord"))

    async def on_entitlement_create(self, entitlement: discord.Entitlement) -> None:
        """A purchase (adapters/discord/payments.py)."""
        await self.payments.on_entitlement(entitlement)

    async def on_entitlement_delete(self, entitlement: discord.Entitlement) -> None:
        """Discord took a purchase back."""
        await self.payments.on_entitlement_delete(entitlement)

    async def on_press(self, interaction: discord.Interaction[Any], press: Press) -> None:
        """A persistent button or menu was used (raised by widgets.py)."""
        await self.handlers.press(interaction, press)


class ShardedClient(Client, discord.AutoShardedClient):
    """The same client on ``[discord] shard_ids`` of ``shard_count`` (many processes).

    Discord sends a guild's events to shard ``(guild_id >> 22) % num_shards`` and DMs to shard 0
    (https://discord.com/developers/docs/events/gateway#sharding), so each process answers the
    guilds of its shards; an interaction's follow-ups are webhook calls with its token, which
    any process may make (https://discord.com/developers/docs/interactions/receiving-and-responding#followup-messages).
    """

    async def on_shard_connect(self, shard_id: int) -> None:
        """A shard's gateway session is up."""
        self.connected = True

    async def on_shard_resumed(self, shard_id: int) -> None:
        """A shard resumed."""
        self.connected = True

    async def on_shard_disconnect(self, shard_id: int) -> None:
        """A shard dropped; discord.py reconnects it by itself."""
        self.connected = False


def build_client(api: BotApi, sync_commands: bool) -> Client:
    """A plain client, or a sharded one when ``[discord] shard_count`` is set."""
    section = api.settings.discord
    if section.shard_count is None:
        return Client(api, sync_commands=sync_commands)
    return ShardedClient(api, sync_commands=sync_commands, shard_count=section.shard_count,
                         shard_ids=list(section.shard_ids) or None)


class DiscordAdapter:
    """Runs one discord.py client against the core until ``stop`` is set."""

    name = "discord"

    def __init__(self, api: BotApi, *, token: str, sync_commands: bool = False) -> None:
        self.api = api
        self._token = token
        self._sync = sync_commands
        self.client: Client | None = None

    @property
    def connected(self) -> bool:
        """True while the gateway session is up."""
        return self.client is not None and self.client.connected

    @property
    def runtime(self) -> Runtime | None:
        """The running adapter's runtime (None before :meth:`run`)."""
        return self.client.runtime if self.client is not None else None

    async def run(self, stop: asyncio.Event) -> None:
        """Log in, connect, serve until ``stop``; then let deliveries in flight finish and close."""
        section = self.api.settings.discord
        previous = point_at(section.api_base_url, section.gateway_url)
        client = self.client = build_client(self.api, self._sync)
        try:
            async with client:
                runner = asyncio.create_task(client.start(self._token), name="discord-client")
                waiter = asyncio.create_task(stop.wait(), name="discord-stop")
                done, _ = await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if runner in done:
                    waiter.cancel()
                    _raise_clearly(runner)
                    return
                await client.runtime.drain(self.api.settings.limits.shutdown_grace_seconds)
                await client.close()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
        finally:
            client.connected = False
            restore(previous)


def _raise_clearly(runner: asyncio.Task[None]) -> None:
    """Turn the client's start-up failures into one clear configuration error."""
    exc = runner.exception()
    if isinstance(exc, discord.LoginFailure):
        raise ConfigError("Discord rejected the bot token") from exc
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        raise ConfigError("Discord refused the gateway intents: switch on Message Content in "
                          "the Developer Portal, or set [discord] message_content_intent = "
                          "false") from exc
    if exc is not None:
        raise exc
