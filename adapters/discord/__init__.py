"""Discord adapter: slash commands, an "Edit image" menu, reply edits and persistent buttons."""

from __future__ import annotations

import asyncio
import contextlib

import discord

from adapters.discord.client import ImagineClient, point_at, restore
from bot.bootstrap import Core
from bot.errors import ConfigError

__all__ = ["DiscordAdapter", "ImagineClient"]


class DiscordAdapter:
    """Runs one discord.py client against the core until ``stop`` is set."""

    name = "discord"

    def __init__(self, core: Core, *, token: str, sync_commands: bool = False) -> None:
        self.core = core
        self._token = token
        self._sync = sync_commands
        self.client: ImagineClient | None = None

    @property
    def connected(self) -> bool:
        """True while the gateway session is up."""
        return self.client is not None and self.client.is_connected

    async def run(self, stop: asyncio.Event) -> None:
        """Log in, connect, serve until ``stop``; then let deliveries in flight finish and close."""
        previous = point_at(self.core.settings.discord)
        client = self.client = ImagineClient(self.core, sync_commands=self._sync)
        try:
            async with client:
                runner = asyncio.create_task(client.start(self._token), name="discord-client")
                waiter = asyncio.create_task(stop.wait(), name="discord-stop")
                done, _ = await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if runner in done:
                    waiter.cancel()
                    _raise_clearly(runner)
                    return
                await client.drain(self.core.settings.limits.shutdown_grace_seconds)
                await client.close()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
        finally:
            client.is_connected = False
            restore(previous)


def _raise_clearly(runner: asyncio.Task[None]) -> None:
    """Turn the client's start-up failures into one clear configuration error."""
    exc = runner.exception()
    if isinstance(exc, discord.LoginFailure):
        raise ConfigError("Discord rejected the bot token") from exc
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        raise ConfigError("Discord refused the gateway intents") from exc
    if exc is not None:
        raise exc
