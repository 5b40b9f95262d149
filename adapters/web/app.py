"""The web console adapter: an aiohttp app serving the playground and the operator view.

Its composition root: :func:`build_app` wires the runtime, the middlewares and every route.
The path of a job through the core and the adapters is mapped in docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from adapters.shared_redis import connect
from adapters.web import middleware as mw
from adapters.web import pages
from adapters.web.handlers import Handlers
from adapters.web.inbound import MAX_BODY
from adapters.web.media import Media
from adapters.web.network import is_loopback
from adapters.web.operator import OperatorView
from adapters.web.pages import Bundle, load_bundle
from adapters.web.playground import Playground
from adapters.web.policy import PolicyView
from adapters.web.progress import Live, OperatorLive
from adapters.web.runtime import Runtime
from adapters.web.security import console_secret
from adapters.web.sessions_redis import RedisSessions, shared_secret
from bot.api import BotApi, ConfigError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MIN_TOKEN = 20


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"[web] listen = {listen!r}: expected host:port, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


class WebConsole:
    """Serves the console until stopped; ``url`` tells where (listen port 0 picks a free one)."""

    name = "web"

    def __init__(self, api: BotApi, *, listen: str = "127.0.0.1:8080", token: str,
                 secret: bytes | None = None) -> None:
        self._api = api
        self._host, self._port = parse_listen(listen)
        self._token = token
        self._secret = secret
        self._running = False
        self._bound: tuple[str, int] | None = None

    @property
    def connected(self) -> bool:
        """True while the server is listening."""
        return self._running

    @property
    def url(self) -> str:
        """The console's address (after start-up, with the port actually bound)."""
        host, port = self._bound or (self._host, self._port)
        host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def run(self, stop: asyncio.Event) -> None:
        """Listen, serve until ``stop`` is set, let running jobs finish, close."""
        secret = self._secret
        shared = self._api.settings.redis
        redis = connect(shared.url) if shared.url else None
        if redis is not None and secret is None:  # consoles in many processes sign alike
            secret = await shared_secret(redis, shared.prefix)
        if secret is None:
            secret = await asyncio.to_thread(console_secret, self._api.settings.bot.data_dir)
        bundle = await asyncio.to_thread(load_bundle)
        rt = Runtime(self._api, token=self._token, secret=secret, listen_host=self._host)
        if redis is not None:
            rt.sessions = RedisSessions(redis, shared.prefix)
        runner = web.AppRunner(build_app(rt, bundle), access_log=None,
                               handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            try:
                await site.start()
            except OSError as err:
                raise ConfigError(f"[web] listen = {self._host}:{self._port}: {err.strerror}"
                                  ) from None
            address = runner.addresses[0]
            self._bound = (self._host, int(address[1]))
            self._running = True
            if not is_loopback(self._host):
                log.warning("web console listens on %s, reachable from other machines", self._host)
            if len(self._token) < MIN_TOKEN:
                # Wrong tokens are slowed, never allowed to lock the operator out: the token's
                # length is what stands against guessing.
                log.warning("the operator token in %s is short (%d characters); use %d or more",
                            self._api.settings.web.token_env, len(self._token), MIN_TOKEN)
            log.info("web console on %s; operator view at %s/operator (token: run "
                     "`imagine-bot console-token`, or set %s)", self.url, self.url,
                     self._api.settings.web.token_env)
            await stop.wait()
        finally:
            self._running = False
            rt.closing.set()
            await rt.close(self._api.settings.limits.shutdown_grace_seconds + 5.0)
            await runner.cleanup()
            if redis is not None:
                await redis.aclose()


def build_app(rt: Runtime, bundle: Bundle) -> web.Application:
    """The aiohttp application with its middlewares and routes."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[
        mw.guard(rt), mw.gate(rt), mw.visitor(rt), mw.csrf(rt), mw.answer(rt)])
    pages.setup(app, bundle)
    app.add_routes([*Playground(rt, bundle).routes(), *Handlers(rt, bundle).routes(),
                    *Live(rt, bundle.env).routes(), *OperatorLive(rt, bundle.env).routes(),
                    *Media(rt).routes(), *OperatorView(rt, bundle).routes(),
                    *PolicyView(rt, bundle).routes(),  # routes, failovers, groups (issue 17)
                    web.get("/static/{name}", _static(bundle))])
    return app


def _static(bundle: Bundle) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        asset = bundle.assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound()
        headers = {"ETag": f'"{asset.etag}"', "Cache-Control": "public, max-age=86400"}
        if request.headers.get("If-None-Match") == headers["ETag"]:
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)
    return serve
