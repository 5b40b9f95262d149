"""The console's middlewares, outermost first: guard, gate, visitor, CSRF, answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from adapters.web import inbound
from adapters.web.network import pool_id
from adapters.web.pages import page
from adapters.web.runtime import Runtime, internal
from adapters.web.security import SESSION_COOKIE, VISITOR_COOKIE
from bot.api import BotError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[..., Awaitable[web.StreamResponse]]
CSP = ("default-src 'none'; img-src 'self' blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
VISITOR_SECONDS = 365 * 24 * 3600
ERROR_KEYS = {404: "web.not_found", 403: "web.forbidden", 413: "web.too_big",
              421: "web.misdirected"}
#: The HTTP status of a core refusal, by its key (any other: 422, a request the bot declines).
STATUS = {"error.not_owner": 403, "error.not_found": 404, "error.too_large": 413,
          "error.too_many_waiting": 429, "error.internal": 500}


def error_page(rt: Runtime, request: web.Request, status: int, text: str) -> web.Response:
    """An error in words: JSON under /api/, else a small page."""
    if request.path.startswith("/api/"):
        return web.json_response({"error": text}, status=status)
    locale = rt.page_locale(request)
    return page(request, "error", lang=locale, title=str(status), status=status, text=text,
                back=rt.t(locale, "web.op.back"))


def _said(rt: Runtime, request: web.Request, status: int, key: str,
          **params: object) -> web.Response:
    """A translated error of the console's own (in the browser's language)."""
    return error_page(rt, request, status, rt.t(rt.page_locale(request), key, **params))


def guard(rt: Runtime) -> Middleware:
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
                response = _said(rt, request, exc.status,
                                 ERROR_KEYS.get(exc.status, "web.bad_request"))
        except Exception as exc:  # raised before a visitor was known (answer() has the rest)
            err = internal(exc, f"{request.method} {request.path}")
            response = error_page(rt, request, 500,
                                  rt.api.error_text(rt.page_locale(request), err))
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if not request.path.startswith(("/static/", "/img/")):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
    return middleware


def gate(rt: Runtime) -> Middleware:
    """Trusted-proxy headers, then only our own host names, then the body cap by its length.

    A declared Content-Length past the cap is refused before any of the body is read; a body
    without one (chunked) is counted as it streams by the handler that reads it. (aiohttp's
    ``client_max_size`` only guards ``read()``/``post()``; the composer streams multipart.)
    After the answer aiohttp discards what the client still sends for up to ``lingering_time``
    (10 s) so the client sees the 413 instead of a reset; nothing of it is kept.
    """
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request = rt.network.forwarded(request)
        if not rt.network.host_ok(request):
            log.info("web: refused Host %r from %s", request.host, request.remote)
            return _said(rt, request, 421, "web.misdirected")
        cap = rt.body_cap(request.path)
        if request.content_length is not None and request.content_length > cap:
            response = _said(rt, request, 413, "web.body_too_big", limit_mb=f"{cap / 1e6:g}")
            response.force_close()  # don't keep a connection whose client is still sending
            return response
        return await handler(request)
    return middleware


def visitor(rt: Runtime) -> Middleware:
    """Every browser gets an anonymous id in a signed cookie; the pool says who pays."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        uid = rt.signer.visitor(request.cookies.get(VISITOR_COOKIE))
        await rt.sessions.load(request.cookies.get(SESSION_COOKIE))  # shared ones: from Redis
        fresh = None
        if uid is None:
            uid, fresh = rt.signer.new_visitor()
        request[inbound.UID] = uid
        # On a console others can reach, a cleared cookie must not be a fresh allowance.
        request[inbound.ACTOR_ID] = pool_id(rt.secret, request.remote) if rt.pooled else uid
        response = await handler(request)
        if fresh is not None and request.method == "GET":
            response.set_cookie(VISITOR_COOKIE, fresh, max_age=VISITOR_SECONDS, path="/",
                                httponly=True, samesite="Lax", secure=rt.network.secure(request))
        return response
    return middleware


def csrf(rt: Runtime) -> Middleware:
    """Every POST must come from our own page: same origin and this visitor's token."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            site = request.headers.get("Sec-Fetch-Site", "same-origin")
            same = (origin is None or origin == rt.network.origin(request)) and (
                site in ("same-origin", "none"))
            if not same or not await rt.csrf_ok(request):
                log.info("web: refused %s %s (CSRF check failed)", request.method, request.path)
                return _said(rt, request, 403, "web.csrf")
        return await handler(request)
    return middleware


def answer(rt: Runtime) -> Middleware:
    """What a handler raised, in the visitor's words: the console's refusals, and through the
    runtime's guard the core's (BotError) and anything unexpected (an InternalError's id)."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except inbound.Refusal as refused:
            return error_page(rt, request, refused.status, refused.text)
        except Exception as exc:
            told = await rt.told(inbound.actor(request), exc,
                                 f"{request.method} {request.path}")
            status = STATUS.get(told.error or "", 422) if isinstance(exc, BotError) else 500
            return error_page(rt, request, status, told.text)
    return middleware
