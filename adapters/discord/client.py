"""The discord.py client: persistent components, commands, the reply listener, endpoints."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from adapters.discord import commands, replies
from adapters.discord.common import actor_of, allowed, clip, log
from adapters.discord.flows import Flows
from adapters.discord.translate import CatalogTranslator
from adapters.discord.views import DYNAMIC_ITEMS
from bot.bootstrap import Core
from bot.config import DiscordSection
from bot.errors import InternalError

API_BASE = "https://discord.com/api/v10"


def point_at(section: DiscordSection) -> tuple[str, yarl.URL]:
    """Aim discord.py at ``api_base_url`` / ``gateway_url``; returns the previous values."""
    # discord.py has no per-client option for either, so this sets the two class attributes it
    # reads: Route.BASE (every REST call, interaction webhooks included) and
    # DiscordWebSocket.DEFAULT_GATEWAY (a plain Client connects there directly, and falls back to
    # it after an invalidated session). Both are process-wide: one Discord connection per process.
    previous = (discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    discord.http.Route.BASE = (section.api_base_url or API_BASE).rstrip("/")
    if section.gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(section.gateway_url)
    return previous


def restore(previous: tuple[str, yarl.URL]) -> None:
    """Undo :func:`point_at`."""
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = previous


class Tree(app_commands.CommandTree["ImagineClient"]):
    """A command tree whose unexpected errors become a short error id, never a traceback."""

    async def on_error(self, interaction: discord.Interaction[ImagineClient],
                       error: app_commands.AppCommandError, /) -> None:
        """Log the failure and tell the user its id."""
        await self.client.fail(interaction, error)


class ImagineClient(discord.Client):
    """One bot connection; the core is injected, nothing global but the endpoints."""

    #: The interaction token's life; results that come later go to the channel instead.
    token_life = 15 * 60.0

    def __init__(self, core: Core, *, sync_commands: bool = False) -> None:
        # The bot never joins voice: discord.py's start-up warnings about its optional voice
        # libraries (PyNaCl, davey) would only send operators after something they don't need.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        # Intents.default() leaves out message_content: mentions and DMs carry content anyway.
        super().__init__(intents=discord.Intents.default(),
                         allowed_mentions=discord.AllowedMentions.none())
        self.core = core
        self.sync_commands = sync_commands
        self.tree = Tree(self)
        self.flows = Flows(self)
        self.accepting = True
        self.is_connected = False
        self._session: aiohttp.ClientSession | None = None
        self._jobs: set[asyncio.Task[Any]] = set()

    @property
    def session(self) -> aiohttp.ClientSession:
        """HTTP session for downloading users' images."""
        if self._session is None:
            raise RuntimeError("client not logged in")
        return self._session

    async def setup_hook(self) -> None:
        """Register persistent components and commands; sync only when asked to."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        await self.tree.set_translator(CatalogTranslator(self.core.messages))
        commands.register(self)
        if self.sync_commands:
            synced = await self.tree.sync()
            log.info("synced %d application commands", len(synced))

    async def close(self) -> None:
        """Disconnect and release the download session."""
        await super().close()
        if self._session is not None:
            await self._session.close()

    async def on_connect(self) -> None:
        """Gateway session is up."""
        self.is_connected = True

    async def on_ready(self) -> None:
        """Logged in and the guild list is loaded: the operator's "it works" line."""
        user = self.user
        log.info("discord: connected as %s (id %s), in %d servers; ready", user,
                 user.id if user else "?", len(self.guilds))

    async def on_resumed(self) -> None:
        """Gateway session resumed."""
        self.is_connected = True

    async def on_disconnect(self) -> None:
        """Gateway dropped; discord.py reconnects by itself."""
        self.is_connected = False

    async def on_message(self, message: discord.Message) -> None:
        """Replies to results that mention the bot become edits."""
        await replies.on_message(self, message)

    # ----- helpers the handlers share -------------------------------------------------------

    async def admit(self, interaction: discord.Interaction[Any]) -> bool:
        """Allow-list and shutdown gate; answers the interaction itself when it says no."""
        key = None
        if not allowed(self.core, interaction.guild_id):
            key = "error.not_allowed"
        elif not self.accepting or not self.core.scheduler.accepting:
            key = "discord.restarting"
        if key is None:
            return True
        locale = await self.core.service.locale_for(actor_of(interaction))
        await interaction.response.send_message(self.core.messages.t(locale, key), ephemeral=True)
        return False

    @contextlib.asynccontextmanager
    async def tracked(self) -> AsyncIterator[None]:
        """Mark the current task as delivering a result, so a stop waits for it."""
        task = asyncio.current_task()
        if task is not None:
            self._jobs.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._jobs.discard(task)

    async def drain(self, grace: float) -> None:
        """Refuse new work and give deliveries in flight up to ``grace`` seconds."""
        self.accepting = False
        jobs = {job for job in self._jobs if job is not asyncio.current_task()}
        if jobs:
            await asyncio.wait(jobs, timeout=grace)

    async def guarded(self, interaction: discord.Interaction[Any], work: Awaitable[None]) -> None:
        """Run a component or modal handler; unexpected errors get an error id, not a traceback."""
        try:
            await work
        except Exception as exc:
            await self.fail(interaction, exc)

    async def fail(self, interaction: discord.Interaction[Any], error: BaseException) -> None:
        """Log ``error`` with an id and show the id to the user (ephemeral)."""
        internal = InternalError()
        log.error("discord handler failed (error %s)", internal.error_id, exc_info=error)
        locale = await self.core.service.locale_for(actor_of(interaction))
        text = clip(self.core.presenter.error(locale, internal))
        with contextlib.suppress(discord.HTTPException):
            if interaction.response.is_done():
                await interaction.edit_original_response(content=text, view=None)
            else:
                await interaction.response.send_message(text, ephemeral=True)
