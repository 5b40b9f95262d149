"""The Telegram adapter: builds the PTB Application, wires its parts, runs until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx
from telegram import Bot, BotCommand, BotCommandScopeAllChatAdministrators, BotCommandScopeChat
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from adapters.telegram.commands import CommandHandlers
from adapters.telegram.deliver import Sender
from adapters.telegram.guest import GuestQueries, guest_updates
from adapters.telegram.handlers import ImagineHandlers
from adapters.telegram.outbox import keep_replaying
from adapters.telegram.payments import Payments
from adapters.telegram.progress import Throttle, Timing
from adapters.telegram.ratelimit import RateLimiter, SendBudget
from adapters.telegram.ratelimit_redis import send_budget
from adapters.telegram.runtime import Runtime
from adapters.telegram.takeover import keep_taking_over
from adapters.telegram.webhook import WebhookServer, secret_for
from bot.api import BotApi, ConfigError

log = logging.getLogger(__name__)

#: pre_checkout_query: a shop's payments wait for the bot's answer (adapters/telegram/payments.py).
ALLOWED_UPDATES = ["message", "callback_query", "pre_checkout_query"]
COMMANDS = ("imagine", "describe", "history", "quota", "settings", "help", "forget")
ADMIN_COMMANDS = (*COMMANDS, "grant", "stats")
#: In the menus only while something is for sale ([shop]); /paysupport is Telegram's rule.
SHOP_COMMANDS, SHOP_ADMIN_COMMANDS = ("buy", "paysupport"), ("refund",)
#: Chinese menus go to clients whose language_code is "zh" (Telegram has no script subtag).
MENU_LOCALES = {"": "en", "zh": "zh-Hans"}
#: A Telegram 429 on an answer is waited out (retry_after) this many times before the call
#: fails; a result waits as long as [limits] delivery_retry_hours allows (deliver.py).
RATE_LIMIT_RETRIES = 3
#: How long after a polling error the adapter still reports itself as disconnected.
RECOVERY_SECONDS = 30.0

#: Bot API connections at once: python-telegram-bot's default pool size.
POOL_SIZE = 256

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


class TransportFactory(Protocol):
    """Makes the transport of the Bot API calls for a pool of ``limit`` connections."""

    def __call__(self, *, limit: int) -> httpx.AsyncBaseTransport: ...


def bot_api_request(transport: TransportFactory | None) -> HTTPXRequest:
    """PTB's request object for every call but getUpdates, on ``transport`` (PTB's own: None).

    The composition root gives aiohttp's (bot/providers/wire/aio_transport.py): httpcore's
    pool polls each of its connections on every request, which a burst of drafts paid for in
    event-loop time. The timeouts are those the builder was given before: 10 s to connect,
    30 s to read and write, 180 s to write a file (a 4K original to a slow Bot API server),
    1 s for a free connection (results ask for longer: deliver.POOL_WAIT).
    """
    return HTTPXRequest(connection_pool_size=POOL_SIZE, connect_timeout=10, read_timeout=30,
                        write_timeout=30, media_write_timeout=180, pool_timeout=1.0,
                        httpx_kwargs={"transport": transport(limit=POOL_SIZE)} if transport else None)


class TelegramAdapter:
    """Runs the bot on Telegram by long polling (default) or webhook (``telegram.webhook_url``)."""

    name = "telegram"

    def __init__(self, api: BotApi, *, token: str, timing: Timing | None = None,
                 poll_timeout: float = 10.0, transport: TransportFactory | None = None) -> None:
        self._api = api
        self._token = token
        self._transport = transport
        self._timing = timing or Timing()
        self._poll_timeout = poll_timeout
        self._running = False
        self._poll_error_at = float("-inf")
        #: Telegram's sending limits, shared by every call of this adapter (ratelimit.py).
        self.budget = SendBudget()

    @property
    def connected(self) -> bool:
        """True while polling (or the webhook) runs and no recent polling error was seen."""
        return self._running and time.monotonic() - self._poll_error_at > RECOVERY_SECONDS

    def _build(self) -> AnyApplication:
        cfg = self._api.settings.telegram
        # A fresh one per run (its dispatcher lives on this loop); shared with [redis].
        shared = self._api.settings.redis
        self.budget = send_budget(shared.url, shared.prefix)
        builder = (ApplicationBuilder().token(self._token).concurrent_updates(True)
                   .rate_limiter(RateLimiter(self.budget, reply_retries=RATE_LIMIT_RETRIES))
                   .job_queue(None).request(bot_api_request(self._transport)))
        if cfg.base_url:
            builder = builder.base_url(cfg.base_url)
        if cfg.base_file_url:
            builder = builder.base_file_url(cfg.base_file_url)
        app: AnyApplication = builder.build()
        return app

    def _wire(self, app: AnyApplication) -> tuple[Runtime, ImagineHandlers]:
        send = Sender(app.bot, self._api, self._timing.send_retry_delays, self.budget)
        cfg = self._api.settings.telegram
        rt = Runtime(self._api, app.bot, cfg, send, self._timing, Throttle(drafts=cfg.drafts))
        imagine = ImagineHandlers(rt)
        app.add_handlers(CommandHandlers(rt).handlers())
        self._payments = Payments(rt)
        app.add_handlers(self._payments.handlers())
        app.add_handlers(GuestQueries(rt).handlers())  # guest_message (Bot API 10.0)
        app.add_handler(CallbackQueryHandler(imagine.on_button, pattern=r"^ib:"))
        app.add_handler(MessageHandler(filters.UpdateType.MESSAGE & ~filters.StatusUpdate.ALL,
                                       imagine.on_message))
        app.add_error_handler(self._on_error)
        return rt, imagine

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve updates until ``stop`` is set, then finish running work and close."""
        app = self._build()
        rt, imagine = self._wire(app)
        if not await self._initialize(app, stop):
            return
        cfg = self._api.settings.telegram
        webhook: WebhookServer | None = None
        replaying: asyncio.Task[None] | None = None
        taking_over: asyncio.Task[None] | None = None
        try:
            await app.start()
            self._payments.start()
            await self._register_commands(app.bot)
            updates = [*ALLOWED_UPDATES, *guest_updates(cfg.cache_chat_id, app.bot.bot)]
            if cfg.webhook_url:
                webhook = WebhookServer(app, cfg.webhook_url, cfg.webhook_listen,
                                        secret_for(self._token), updates,
                                        owner=self._webhook_owner(),
                                        renew_every=self._api.leader.renew_every)
                await webhook.start()
            elif app.updater is not None:
                await app.updater.start_polling(timeout=int(self._poll_timeout),
                                                allowed_updates=updates,
                                                error_callback=self._on_poll_error)
            self._running = True
            log.info("telegram: connected as @%s", app.bot.username)
            replaying = asyncio.create_task(keep_replaying(self._api, rt.send),
                                            name="telegram:outbox")
            taking_over = asyncio.create_task(keep_taking_over(rt, imagine.creating),
                                              name="telegram:takeover")
            await stop.wait()
        finally:
            self._running = False
            for task in (replaying, taking_over):  # parked results stay parked for the next start
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            if webhook is not None:
                await webhook.stop()
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            imagine.close()
            await rt.tasks.drain(self._api.settings.limits.shutdown_grace_seconds + 5.0)
            if app.running:
                await app.stop()
            await app.shutdown()

    def _webhook_owner(self) -> Callable[[], Awaitable[bool]]:
        """Whether this process registers the webhook: as configured, else by holding the role."""
        fixed = self._api.settings.telegram.webhook_owner
        if fixed is not None:
            async def configured() -> bool:
                return fixed
            return configured
        return lambda: self._api.leader.hold("telegram-webhook")

    async def _initialize(self, app: AnyApplication, stop: asyncio.Event) -> bool:
        """getMe until Telegram answers (a network drop at start-up is waited out)."""
        delay = 1.0
        while not stop.is_set():
            try:
                await app.initialize()
                return True
            except InvalidToken:
                env = self._api.settings.telegram.token_env
                raise ConfigError(f"Telegram rejected the bot token in {env}") from None
            except NetworkError as err:
                log.warning("telegram unreachable (%s); retrying in %.0f s", err, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 60.0)
        return False

    async def _register_commands(self, bot: Bot) -> None:
        """Command menus in English and Chinese; admins also see the admin commands."""
        t = self._api.t
        admins = [int(key.split(":", 1)[1]) for key in self._api.settings.bot.admins
                  if key.startswith("telegram:")]
        selling = bool(self._api.shop.packs("telegram"))
        everyone = (*COMMANDS, *SHOP_COMMANDS) if selling else COMMANDS
        operators = (*ADMIN_COMMANDS, *SHOP_COMMANDS, *SHOP_ADMIN_COMMANDS) if selling else (
            ADMIN_COMMANDS)
        for language, locale in MENU_LOCALES.items():
            def menu(names: tuple[str, ...], locale: str = locale) -> list[BotCommand]:
                return [BotCommand(n, t(locale, f"telegram.commands.{n}")) for n in names]
            try:
                await bot.set_my_commands(menu(everyone), language_code=language or None)
                # Group administrators also see /config (issue 17) in their groups' menus.
                await bot.set_my_commands(menu((*everyone, "config")),
                                          scope=BotCommandScopeAllChatAdministrators(),
                                          language_code=language or None)
                for admin in admins:
                    with contextlib.suppress(TelegramError):  # an admin who never wrote to us
                        await bot.set_my_commands(menu(operators),
                                                  scope=BotCommandScopeChat(admin),
                                                  language_code=language or None)
            except TelegramError as err:
                log.warning("telegram: could not set the command menu (%s)", err)

    def _on_poll_error(self, err: TelegramError) -> None:
        self._poll_error_at = time.monotonic()
        log.warning("telegram polling failed (%s); retrying", err)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram update failed", exc_info=context.error)
