"""Webhook mode on aiohttp (PTB's own webhook server would need tornado).

Several receivers may stand behind one load balancer: each checks the secret Telegram echoes in
``X-Telegram-Bot-Api-Secret-Token`` on every request (https://core.telegram.org/bots/api#setwebhook:
"the header ... in every webhook request"), and exactly one of them calls ``setWebhook``: the
process named by ``[telegram] webhook_owner``, else the one holding the webhook role
(bot/leader.py; without Redis, the only process). The secret is derived from the bot token, so
every receiver expects the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlparse

from aiohttp import web
from telegram import Update
from telegram.ext import Application

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def secret_for(token: str) -> str:
    """A stable webhook secret derived from the bot token (Telegram echoes it in a header)."""
    return hashlib.sha256(b"imagine-bot-webhook:" + token.encode()).hexdigest()[:48]


class WebhookServer:
    """Receives updates on ``listen`` and feeds them to the Application's update queue."""

    def __init__(self, app: Application, url: str, listen: str, secret: str,  # type: ignore[type-arg]
                 allowed_updates: list[str], *, owner: Callable[[], Awaitable[bool]] | None = None,
                 renew_every: float = 20.0) -> None:
        self._app = app
        self._url = url
        self._path = urlparse(url).path or "/"
        host, _, port = listen.rpartition(":")
        self._host, self._port = host or "0.0.0.0", int(port)
        self._secret = secret
        self._allowed = allowed_updates
        self._runner: web.AppRunner | None = None
        self._owner = owner
        self._renew_every = renew_every
        self._keep: asyncio.Task[None] | None = None
        #: Whether this process registered the webhook.
        self.registered = False

    async def start(self) -> None:
        """Listen, then tell Telegram where to send updates (if this process is the owner)."""
        server = web.Application(client_max_size=1 << 20)
        server.router.add_post(self._path, self._receive)
        self._runner = web.AppRunner(server, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        if self._owner is None or await self._owner():
            await self._app.bot.set_webhook(self._url, secret_token=self._secret,
                                            allowed_updates=self._allowed)
            self.registered = True
            if self._owner is not None:
                self._keep = asyncio.create_task(self._keep_role(self._owner),
                                                 name="telegram:webhook-owner")
        log.info("telegram webhook listening on %s:%s%s (%s)", self._host, self._port, self._path,
                 "registered it with Telegram" if self.registered else
                 "receiving only: another process registers it")

    async def _keep_role(self, owner: Callable[[], Awaitable[bool]]) -> None:
        """Renew the role while running, so a later receiver does not register it again."""
        while True:
            await asyncio.sleep(self._renew_every)
            with contextlib.suppress(Exception):
                await owner()

    async def _receive(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given, self._secret):
            return web.Response(status=403)
        try:
            update = Update.de_json(await request.json(), self._app.bot)
        except ValueError:
            return web.Response(status=400)
        await self._app.update_queue.put(update)
        return web.Response(status=200)

    async def stop(self) -> None:
        """Stop listening (Telegram keeps queueing updates until we are back)."""
        if self._keep is not None:
            self._keep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keep
            self._keep = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
