"""``imagine-bot run``: every enabled adapter in one event loop, with a graceful stop."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

from bot.bootstrap import Core, build_core
from bot.config import Settings
from bot.errors import ConfigError

log = logging.getLogger(__name__)

NOTHING_ENABLED = """imagine-bot: no chat platform is enabled, so there is nothing to run.
Create config.toml (see config.example.toml) with at least one of:

  [telegram]
  enabled = true            # and export TELEGRAM_BOT_TOKEN=...   (from @BotFather)

  [discord]
  enabled = true            # and export DISCORD_BOT_TOKEN=...    (Developer Portal -> Bot)

Without an image API key the demo provider draws placeholders; add a [providers.NAME]
section (see config.example.toml) for real images. Try it offline first:
  imagine-bot generate "a red fox" --api demo --out fox.png"""


def build_adapters(core: Core, *, sync_commands: bool) -> list[Any]:
    """The enabled adapters, each given the core and its token (read from its env var)."""
    adapters: list[Any] = []
    settings = core.settings
    if settings.telegram.enabled:
        from adapters.telegram import TelegramAdapter

        adapters.append(TelegramAdapter(core, token=Settings.secret(settings.telegram.token_env)))
    if settings.discord.enabled:
        from adapters.discord import DiscordAdapter

        adapters.append(DiscordAdapter(core, token=Settings.secret(settings.discord.token_env),
                                       sync_commands=sync_commands))
    return adapters


async def run(settings: Settings, *, sync_commands: bool = False,
              install_signals: Callable[[asyncio.Event], None] | None = None) -> int:
    """Run until a signal; returns the process exit code."""
    if not settings.telegram.enabled and not settings.discord.enabled:
        print(NOTHING_ENABLED, file=sys.stderr)
        return 2
    core = build_core(settings)
    adapters = build_adapters(core, sync_commands=sync_commands)
    stop, close = asyncio.Event(), asyncio.Event()
    if install_signals is not None:
        install_signals(stop)
    await core.start()
    health = None
    if settings.http.listen:
        from bot.health import HealthServer

        health = HealthServer(settings.http.listen,
                              lambda: core.scheduler.accepting and all(a.connected for a in adapters),
                              core.metrics.render)
        await health.start()
    code = 0
    try:
        async with asyncio.TaskGroup() as group:
            for adapter in adapters:
                group.create_task(_guard(adapter, close, stop), name=f"adapter-{adapter.name}")
            await stop.wait()
            # Adapters stay connected while running jobs finish, so their results still arrive.
            await core.scheduler.drain(settings.limits.shutdown_grace_seconds)
            close.set()
    except* ConfigError as errors:
        for err in errors.exceptions:
            log.error("adapter failed: %s", err)
        code = 2
    finally:
        if health is not None:
            await health.stop()
        await core.stop(grace=0)
    return code


async def _guard(adapter: Any, close: asyncio.Event, stop: asyncio.Event) -> None:
    """Run one adapter until ``close``; a failure is logged clearly and stops the process."""
    try:
        await adapter.run(close)
    except Exception as exc:
        log.error("%s adapter stopped: %s", adapter.name, exc, exc_info=True)
        stop.set()
        raise ConfigError(f"{adapter.name}: {exc}") from exc
