"""The console's middlewares, outermost first: guard, gate, visitor, CSRF."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from adapters.web.context import ACTOR_ID, UID, Console
from adapters.web.network import pool_id
from adapters.web.render import Bundle, page
from adapters.web.security import VISITOR_COOKIE
from bot.errors import InternalError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[..., Awaitable[web.StreamResponse]]
CSP = ("default-src 'none'; img-src 'self' blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
VISITOR_SECONDS = 365 * 24 * 3600
ERROR_KEYS = {404: "web.not_found", 403: "web.forbidden", 413: "web.too_big",
              421: "web.misdirected"}


def error_page(console: Console, bundle: Bundle, request: web.Request, status: int,
               key: str, **params: object) -> web.Response:
    """A translated error: JSON under /api/, else a small page."""
    locale = console.page_locale(request)
    text = console.t(locale, key, **params)
    if request.path.startswith("/api/"):
        return web.json_response({"error": text}, status=status)
    return page(request, "error", lang=locale, title=str(status), status=status, text=text,
                back=console.t(locale, "web.op.back"))


def guard(console: Console, bundle: Bundle) -> Middleware:
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
                response = error_page(console, bundle, request, exc.status,
                                      ERROR_KEYS.get(exc.status, "web.bad_request"))
        except Exception:
            err = InternalError()
            log.exception("web: %s %s failed (error %s)", request.method, request.path,
                          err.params["error_id"])
            response = error_page(console, bundle, request, 500, "error.internal",
                                  error_id=err.params["error_id"])
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if not request.path.startswith(("/static/", "/img/")):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
    return middleware


def gate(console: Console, bundle: Bundle) -> Middleware:
    """Trusted-proxy headers, then only our own host names, then the body cap by its length.

    A declared Content-Length past the cap is refused before any of the body is read; a body
    without one (chunked) is counted as it streams by the handler that reads it. (aiohttp's
    ``client_max_size`` only guards ``read()``/``post()``; the playground streams multipart.)
    After the answer aiohttp discards what the client still sends for up to ``lingering_time``
    (10 s) so the client sees the 413 instead of a reset; nothing of it is kept.
    """
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request = console.network.forwarded(request)
        if not console.network.host_ok(request):
            log.info("web: refused Host %r from %s", request.host, request.remote)
            return error_page(console, bundle, request, 421, "web.misdirected")
        cap = console.body_cap(request.path)
        if request.content_length is not None and request.content_length > cap:
            response = error_page(console, bundle, request, 413, "web.body_too_big",
                                  limit_mb=f"{cap / 1e6:g}")
            response.force_close()  # don't keep a connection whose client is still sending
            return response
        return await handler(request)
    return middleware


def visitor(console: Console) -> Middleware:
    """Every browser gets an anonymous id in a signed cookie; the pool says who pays."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        uid = console.signer.visitor(request.cookies.get(VISITOR_COOKIE))
        fresh = None
        if uid is None:
            uid, fresh = console.signer.new_visitor()
        request[UID] = uid
        # On a console others can reach, a cleared cookie must not be a fresh allowance.
        request[ACTOR_ID] = (pool_id(console.secret, request.remote) if console.pooled else uid)
        response = await handler(request)
        if fresh is not None and request.method == "GET":
            response.set_cookie(VISITOR_COOKIE, fresh, max_age=VISITOR_SECONDS, path="/",
                                httponly=True, samesite="Lax",
                                secure=console.network.secure(request))
        return response
    return middleware


def csrf(console: Console, bundle: Bundle) -> Middleware:
    """Every POST must come from our own page: same origin and this visitor's token."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            site = request.headers.get("Sec-Fetch-Site", "same-origin")
            same = (origin is None or origin == console.network.origin(request)) and (
                site in ("same-origin", "none"))
            if not same or not await console.csrf_ok(request):
                log.info("web: refused %s %s (CSRF check failed)", request.method, request.path)
                return error_page(console, bundle, request, 403, "web.csrf")
        return await handler(request)
    return middleware
