"""What every console handler shares: the core, the signer, sessions, jobs, and request helpers."""

from __future__ import annotations

import asyncio
import math

from aiohttp import web

from adapters.web.jobs import WebJobs
from adapters.web.network import NetworkPolicy
from adapters.web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginLimiter,
    Sessions,
    Signer,
)
from bot.bootstrap import Core
from bot.domain import Actor, ChatRef
from bot.messages import normalize_locale
from bot.providers.routes import ROUTES

#: The visitor id the middleware attaches to each request (its cookie: its chat).
UID = web.RequestKey("uid", str)
#: Who pays and owns the results: the cookie's id, or the address pool's on a public console.
ACTOR_ID = web.RequestKey("actor_id", str)
#: Uploads are streamed and counted (playground); this bounds every other body.
MAX_BODY = 1_000_000
#: The one route that takes uploads, and its caps besides the body's size.
UPLOAD_PATH = "/api/jobs"
MAX_FILES = 16
MAX_FIELDS = 32
#: The operator acts as this admin (the console vouches for it after the token login).
OPERATOR = Actor("web", "operator", display_name="operator", is_admin=True)


def accept_locale(header: str | None) -> str | None:
    """The first catalog locale named in an Accept-Language header."""
    for part in (header or "").split(","):
        found = normalize_locale(part.split(";", 1)[0].strip())
        if found:
            return found
    return None


def upload_cap(core: Core) -> int:
    """``[web] max_body_mb``, else room for the most references of ``max_input_mb`` + 1 MB."""
    settings = core.settings
    if settings.web.max_body_mb is not None:
        return int(settings.web.max_body_mb * 1_000_000)
    refs = min(MAX_FILES, max((m.max_references for m in core.service.catalog.values()),
                              default=1))
    return math.ceil(settings.limits.max_input_mb * 1_000_000) * max(1, refs) + 1_000_000


class Console:
    """Shared state of one running console."""

    def __init__(self, core: Core, *, token: str, secret: bytes,
                 listen_host: str = "127.0.0.1") -> None:
        self.core = core
        self.token = token
        self.secret = secret
        self.signer = Signer(secret)
        self.sessions = Sessions()
        self.limiter = LoginLimiter()
        self.jobs = WebJobs(core.api)
        #: Set when the server starts to stop: open event streams end, new ones are turned away.
        self.closing = asyncio.Event()
        settings = core.settings
        default = core.service.catalog[settings.bot.default_model]
        route = ROUTES[settings.provider_table()[default.provider].api]
        self.demo = route.wire == "demo"
        self.route = route.label  # shown on the page, so the operator sees which route is live
        self.network = NetworkPolicy.from_settings(settings, listen_host)
        self.pooled = self.network.exposed and settings.web.visitor_pool == "address"
        self.max_body = upload_cap(core)
        if settings.web.visitor_daily_credits is not None:
            core.quotas.set_daily_allowance("web:", settings.web.visitor_daily_credits)

    def body_cap(self, path: str) -> int:
        """The most bytes a request to ``path`` may carry."""
        return self.max_body if path == UPLOAD_PATH else MAX_BODY

    def t(self, locale: str, key: str, /, **params: object) -> str:
        """Catalog text."""
        return self.core.messages.t(locale, key, **params)

    @staticmethod
    def uid(request: web.Request) -> str:
        """The visitor id the middleware attached to this request."""
        return request[UID]

    def actor(self, request: web.Request) -> Actor:
        """The anonymous user behind a request: the browser, or its address pool (see ACTOR_ID)."""
        return Actor("web", request.get(ACTOR_ID) or self.uid(request),
                     locale=accept_locale(request.headers.get("Accept-Language")))

    def chat(self, request: web.Request) -> ChatRef:
        """Each browser is its own private chat."""
        return ChatRef("web", self.uid(request), "private")

    async def locale(self, request: web.Request) -> str:
        """The visitor's saved language, else the browser's, else the configured default."""
        return await self.core.service.locale_for(self.actor(request))

    def page_locale(self, request: web.Request) -> str:
        """The browser's language for pages outside the playground (operator view)."""
        return (accept_locale(request.headers.get("Accept-Language"))
                or self.core.settings.bot.locale)

    def csrf(self, request: web.Request) -> str:
        """This visitor's CSRF token, for forms and the page's fetch calls."""
        return self.signer.csrf(self.uid(request))

    async def csrf_ok(self, request: web.Request) -> bool:
        """A POST carries this visitor's token (header for fetch, field for plain forms)."""
        token = request.headers.get(CSRF_HEADER) or None
        if token is None and request.content_type == "application/x-www-form-urlencoded":
            value = (await request.post()).get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
        return self.signer.csrf_ok(request.get(UID), token)

    def operator(self, request: web.Request) -> bool:
        """True when the request carries a live operator session."""
        return self.sessions.valid(request.cookies.get(SESSION_COOKIE))
