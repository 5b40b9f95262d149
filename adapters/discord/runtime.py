"""What every Discord handler is given: the port, the client, the outbox, jobs in flight, one guard."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import aiohttp
import discord

from adapters.base import drain
from adapters.discord.deliver import Sender, clip
from adapters.discord.inbound import actor_of, allowed
from bot.api import Actor, BotApi, BotError, InternalError

log = logging.getLogger("adapters.discord")
Say = Callable[[str], Awaitable[None]]
#: Computes a private answer (text and optional menus) for an actor in their language.
Make = Callable[[Actor, str], Awaitable[tuple[str, discord.ui.View | None]]]


class Runtime:
    """One running Discord adapter, handed explicitly to its handlers and commands."""

    def __init__(self, api: BotApi, client: discord.Client, out: Sender) -> None:
        self.api = api
        self.client = client
        self.out = out
        self.section = api.settings.discord
        #: False once a stop began: new interactions are refused, jobs in flight finish.
        self.accepting = True
        self._session: aiohttp.ClientSession | None = None
        self._jobs: set[asyncio.Task[Any]] = set()

    # ----- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Start the HTTP session for users' images."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))

    async def close(self) -> None:
        """Release the session."""
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """HTTP session for downloading users' images."""
        if self._session is None:
            raise RuntimeError("client not logged in")
        return self._session

    @property
    def max_input(self) -> int:
        """The largest image a user may send, in bytes."""
        return int(self.api.settings.limits.max_input_mb * 1_000_000)

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
        """Refuse new work and give deliveries in flight up to ``grace`` seconds; then cancel
        what is left (a result parked by a long 429 stays held for the next start: outbox.py)."""
        self.accepting = False
        await drain({job for job in self._jobs if job is not asyncio.current_task()}, grace)

    # ----- gates -----------------------------------------------------------------------------

    def allowed(self, guild_id: int | None) -> bool:
        """The ``[discord]`` allow-list."""
        return allowed(guild_id, allow_dms=self.section.allow_dms,
                       allowed_guilds=self.section.allowed_guilds)

    async def admit(self, interaction: discord.Interaction[Any]) -> bool:
        """Allow-list and shutdown gate; answers the interaction itself when it says no."""
        key = None
        if not self.allowed(interaction.guild_id):
            key = "error.not_allowed"
        elif not self.accepting or not self.api.accepting:
            key = "discord.restarting"
        if key is None:
            return True
        locale = await self.api.locale_for(actor_of(interaction))
        await interaction.response.send_message(self.api.t(locale, key), ephemeral=True)
        return False

    # ----- the one error guard ---------------------------------------------------------------

    async def guard(self, actor: Actor, work: Awaitable[None], say: Say) -> None:
        """Await ``work``; a BotError is told to ``actor``, anything else as an error id."""
        try:
            await work
        except BotError as err:
            await self._tell(actor, err, say)
        except Exception as exc:
            await self._tell(actor, self._internal(exc), say)

    async def guard_interaction(self, interaction: discord.Interaction[Any],
                                work: Awaitable[None], actor: Actor | None = None) -> None:
        """:meth:`guard` answering privately on ``interaction``."""
        await self.guard(actor or actor_of(interaction), work, partial(self.out.say, interaction))

    async def fail(self, interaction: discord.Interaction[Any], error: BaseException) -> None:
        """A failure discord.py caught itself (around a command): told like any other."""
        original = getattr(error, "original", None)  # app_commands.CommandInvokeError's cause
        err = original if isinstance(original, BotError) else self._internal(error)
        await self._tell(actor_of(interaction), err, partial(self.out.say, interaction))

    async def answer(self, interaction: discord.Interaction[Any], make: Make, *,
                     vouch: bool = False) -> None:
        """Defer privately, compute the text (and menus), then show it in place of "thinking"."""
        if not await self.admit(interaction):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        actor = actor_of(interaction, vouch=vouch)

        async def work() -> None:
            text, view = await make(actor, await self.api.locale_for(actor))
            if view is None:
                await interaction.edit_original_response(content=clip(text))
            else:
                await interaction.edit_original_response(content=clip(text), view=view)

        await self.guard_interaction(interaction, work(), actor)

    @staticmethod
    def _internal(exc: BaseException) -> InternalError:
        internal = InternalError()
        log.error("discord handler failed (error %s)", internal.error_id, exc_info=exc)
        return internal

    async def _tell(self, actor: Actor, err: BotError, say: Say) -> None:
        """Show ``err`` to ``actor`` (nothing for a ban they were told about); never raises."""
        try:
            reply = await self.api.error_reply(actor, err)
            await say(reply.text)
        except discord.HTTPException as exc:
            log.info("could not tell %s about %s (%s)", actor.key, err.key, exc.status)
        except Exception:
            log.exception("could not tell %s about %s", actor.key, err.key)
