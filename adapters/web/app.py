"""The web console adapter: an aiohttp app serving the playground and the operator view."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from html import escape

from aiohttp import web

from adapters.web.context import UID, Console
from adapters.web.media import Media
from adapters.web.operator import OperatorView
from adapters.web.playground import Playground
from adapters.web.render import Bundle, load_bundle, page
from adapters.web.security import VISITOR_COOKIE, console_secret, is_loopback
from bot.bootstrap import Core
from bot.errors import ConfigError, InternalError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSP = ("default-src 'none'; img-src 'self' blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
VISITOR_SECONDS = 365 * 24 * 3600
#: Uploads are streamed with per-file limits (playground); this bounds every other body.
MAX_BODY = 1_000_000


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"[web] listen = {listen!r}: expected host:port, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


class WebConsole:
    """Serves the console until stopped; ``url`` tells where (listen port 0 picks a free one)."""

    name = "web"

    def __init__(self, core: Core, *, listen: str = "127.0.0.1:8080", token: str,
                 secret: bytes | None = None) -> None:
        self._core = core
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
        if secret is None:
            secret = await asyncio.to_thread(console_secret, self._core.settings.bot.data_dir)
        bundle = await asyncio.to_thread(load_bundle)
        console = Console(self._core, token=self._token, secret=secret)
        runner = web.AppRunner(build_app(console, bundle), access_log=None,
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
            log.info("web console on %s; operator view at %s/operator (token: run "
                     "`imagine-bot console-token`, or set %s)", self.url, self.url,
                     self._core.settings.web.token_env)
            await stop.wait()
        finally:
            self._running = False
            await console.jobs.close(self._core.settings.limits.shutdown_grace_seconds + 5.0)
            await runner.cleanup()


def build_app(console: Console, bundle: Bundle) -> web.Application:
    """The aiohttp application with its middlewares and routes."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[
        _guard(console, bundle), _visitor(console), _csrf(console, bundle)])
    playground = Playground(console, bundle)
    app.add_routes([*playground.routes(), *Media(console).routes(),
                    *OperatorView(console, bundle).routes(),
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


def _error_page(console: Console, bundle: Bundle, request: web.Request, status: int,
                key: str, **params: object) -> web.Response:
    locale = console.page_locale(request)
    text = console.t(locale, key, **params)
    if request.path.startswith("/api/"):
        return web.json_response({"error": text}, status=status)
    body = (f'<main class="center"><div class="panel"><h1>{status}</h1><p>{escape(text)}</p>'
            f'<p><a class="btn" href="/">{escape(console.t(locale, "web.op.back"))}</a></p>'
            "</div></main>")
    return page(bundle, lang=locale, title=str(status), body=body, status=status)


def _guard(console: Console, bundle: Bundle) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Security headers on every answer; translated pages for errors, never a traceback."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response: web.StreamResponse
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                response = web.Response(status=exc.status, headers=exc.headers)
            else:
                key = {404: "web.not_found", 403: "web.forbidden",
                       413: "web.too_big"}.get(exc.status, "web.bad_request")
                response = _error_page(console, bundle, request, exc.status, key)
        except Exception:
            err = InternalError()
            log.exception("web: %s %s failed (error %s)", request.method, request.path,
                          err.params["error_id"])
            response = _error_page(console, bundle, request, 500, "error.internal",
                                   error_id=err.params["error_id"])
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if not request.path.startswith(("/static/", "/img/")):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
    return middleware


def _visitor(console: Console) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Every browser gets an anonymous id in a signed cookie (its "web" user)."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        uid = console.signer.visitor(request.cookies.get(VISITOR_COOKIE))
        fresh = None
        if uid is None:
            uid, fresh = console.signer.new_visitor()
        request[UID] = uid
        response = await handler(request)
        if fresh is not None and request.method == "GET":
            response.set_cookie(VISITOR_COOKIE, fresh, max_age=VISITOR_SECONDS, path="/",
                                httponly=True, samesite="Lax", secure=request.secure)
        return response
    return middleware


def _csrf(console: Console, bundle: Bundle) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Every POST must come from our own page: same origin and this visitor's token."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            site = request.headers.get("Sec-Fetch-Site", "same-origin")
            same = (origin is None or origin == f"{request.scheme}://{request.host}") and (
                site in ("same-origin", "none"))
            if not same or not await console.csrf_ok(request):
                log.info("web: refused %s %s (CSRF check failed)", request.method, request.path)
                return _error_page(console, bundle, request, 403, "web.csrf")
        return await handler(request)
    return middleware
