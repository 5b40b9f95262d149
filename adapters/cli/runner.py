"""``imagine-bot run``: every enabled adapter in one event loop, with a graceful stop.

Stop order matters: on the first signal the scheduler stops taking work and cancels queued jobs
(their users are told, and refunded) while the adapters stay connected, so running jobs still
deliver; only after the grace period are adapters closed, then the store.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable

from adapters.base import Adapter
from adapters.cli.lineup_report import live_routes
from bot.api import ConfigError, Settings, StoreUnavailable
from bot.bootstrap import Core, build_core
from bot.providers.wire.aio_transport import AiohttpTransport
from bot.warmup import tuned_collector, warm_up

log = logging.getLogger(__name__)

NOTHING_ENABLED = """imagine-bot: no chat platform is enabled and the web console is off.
Create config.toml (see config.example.toml) with at least one of:

  [telegram]
  enabled = true            # and export TELEGRAM_BOT_TOKEN=...   (from @BotFather)

  [discord]
  enabled = true            # and export DISCORD_BOT_TOKEN=...    (Developer Portal -> Bot)

  [web]
  enabled = "on"            # the browser console on http://127.0.0.1:8080

Without an image API key the demo provider draws placeholders; add a [providers.NAME]
section (see config.example.toml) for real images. Try it offline first:
  imagine-bot generate "a red fox" --api demo --out fox.png"""


def web_wanted(settings: Settings) -> bool:
    """The console runs when switched on, or by default when no chat platform is enabled."""
    chat = settings.telegram.enabled or settings.discord.enabled
    return settings.web.enabled == "on" or (settings.web.enabled == "auto" and not chat)


def build_adapters(core: Core, *, sync_commands: bool) -> list[Adapter]:
    """The enabled adapters, each given the port and its token (read from its env var)."""
    adapters: list[Adapter] = []
    settings = core.settings
    if settings.telegram.enabled:
        from adapters.telegram import TelegramAdapter

        adapters.append(TelegramAdapter(core.api, token=Settings.secret(settings.telegram.token_env),
                                        transport=AiohttpTransport))
    if settings.discord.enabled:
        from adapters.discord import DiscordAdapter

        adapters.append(DiscordAdapter(core.api, token=Settings.secret(settings.discord.token_env),
                                       sync_commands=sync_commands))
    if web_wanted(settings):
        from adapters.web import WebConsole
        from adapters.web.security import console_token

        adapters.append(WebConsole(core.api, listen=settings.web.listen,
                                   token=console_token(settings)))
    return adapters


async def run(settings: Settings, *, sync_commands: bool = False,
              install_signals: Callable[[asyncio.Event], None] | None = None) -> int:
    """Run until a signal; returns the process exit code."""
    if not settings.telegram.enabled and not settings.discord.enabled and not web_wanted(settings):
        print(NOTHING_ENABLED, file=sys.stderr)
        return 2
    core = build_core(settings)
    for line in live_routes(settings):
        log.info("image route %s", line)
    for use in settings.retired_uses:
        log.warning("%s", use)
    adapters = build_adapters(core, sync_commands=sync_commands)
    stop, close = asyncio.Event(), asyncio.Event()
    if install_signals is not None:
        install_signals(stop)
    await core.start()
    await warm_up(core)  # codecs and thread pools now, not in the first user's job
    with tuned_collector() as frozen:
        log.info("start-up heap frozen: %d objects no collection walks again", frozen)
        return await _serve(core, adapters, stop, close)


async def _serve(core: Core, adapters: list[Adapter], stop: asyncio.Event,
                 close: asyncio.Event) -> int:
    """The adapters (and the health endpoint) until ``stop``, then the graceful stop."""
    settings = core.settings
    health = None
    if settings.http.listen:
        from adapters.cli.health import HealthServer

        health = HealthServer(settings.http.listen,
                              lambda: core.api.accepting and all(a.connected for a in adapters),
                              core.metrics.render, writable=lambda: writable(core))
        await health.start()
    failed: list[str] = []
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_housekeeping(core, close), name="housekeeping")
            for adapter in adapters:
                group.create_task(_guard(adapter, close, stop, failed, len(adapters),
                                         settings.bot.adapter_failure),
                                  name=f"adapter-{adapter.name}")
            await stop.wait()
            log.info("stopping: no new jobs; running ones get %.0f s",
                     settings.limits.shutdown_grace_seconds)
            await core.scheduler.drain(settings.limits.shutdown_grace_seconds)
            await core.service.wait_idle(5.0)
            close.set()
    finally:
        if health is not None:
            await health.stop()
        await core.stop(grace=0)
    return 2 if failed else 0


async def _housekeeping(core: Core, close: asyncio.Event, every: float = 6 * 3600) -> None:
    """Apply image retention and the blob size cap periodically while running.

    With ``[redis]`` only the process holding the housekeeping role does (bot/leader.py).
    """
    while not close.is_set():
        try:
            await asyncio.wait_for(close.wait(), every)
        except TimeoutError:
            if not await core.leader.hold("housekeeping"):
                continue
            try:
                removed = await core.conversations.blobs.prune()
                log.info("retention: removed %d stored image(s)", removed)
            except Exception:
                log.exception("retention pass failed; will try again")


async def _guard(adapter: Adapter, close: asyncio.Event, stop: asyncio.Event, failed: list[str],
                 total: int, policy: str) -> None:
    """Run one adapter until ``close``; on failure stop everything or, by policy, carry on."""
    try:
        await adapter.run(close)
    except Exception as exc:
        reason = exc.detail if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
        failed.append(adapter.name)
        if policy == "continue" and len(failed) < total:
            log.error("%s adapter stopped (%s); the others keep running", adapter.name, reason)
            return
        log.error("%s adapter stopped (%s); stopping", adapter.name, reason,
                  exc_info=not isinstance(exc, ConfigError))
        stop.set()


async def writable(core: Core) -> bool:
    """/readyz: the database takes a write and the image store answers (both cheap probes)."""
    if not await core.store.writable():
        return False
    try:
        await core.conversations.blobs.objects.probe()
    except StoreUnavailable:
        return False
    return True
