"""Webhook mode on aiohttp (PTB's own webhook server would need tornado)."""

from __future__ import annotations

import hashlib
import hmac
import logging
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
                 allowed_updates: list[str]) -> None:
        self._app = app
        self._url = url
        self._path = urlparse(url).path or "/"
        host, _, port = listen.rpartition(":")
        self._host, self._port = host or "0.0.0.0", int(port)
        self._secret = secret
        self._allowed = allowed_updates
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen, then tell Telegram where to send updates."""
        server = web.Application(client_max_size=1 << 20)
        server.router.add_post(self._path, self._receive)
        self._runner = web.AppRunner(server, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        await self._app.bot.set_webhook(self._url, secret_token=self._secret,
                                        allowed_updates=self._allowed)
        log.info("telegram webhook listening on %s:%s%s", self._host, self._port, self._path)

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
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
