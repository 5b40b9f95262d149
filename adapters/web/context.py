"""What every console handler shares: the core, the signer, sessions, jobs, and request helpers."""

from __future__ import annotations

from aiohttp import web

from adapters.web.jobs import WebJobs
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

#: The visitor id the middleware attaches to each request.
UID = web.RequestKey("uid", str)
#: The operator acts as this admin (the console vouches for it after the token login).
OPERATOR = Actor("web", "operator", display_name="operator", is_admin=True)


def accept_locale(header: str | None) -> str | None:
    """The first catalog locale named in an Accept-Language header."""
    for part in (header or "").split(","):
        found = normalize_locale(part.split(";", 1)[0].strip())
        if found:
            return found
    return None


class Console:
    """Shared state of one running console."""

    def __init__(self, core: Core, *, token: str, secret: bytes) -> None:
        self.core = core
        self.token = token
        self.signer = Signer(secret)
        self.sessions = Sessions()
        self.limiter = LoginLimiter()
        self.jobs = WebJobs(core.service)
        settings = core.settings
        default = core.service.catalog[settings.bot.default_model]
        self.demo = settings.provider_table()[default.provider].api == "demo"

    def t(self, locale: str, key: str, /, **params: object) -> str:
        """Catalog text."""
        return self.core.messages.t(locale, key, **params)

    @staticmethod
    def uid(request: web.Request) -> str:
        """The visitor id the middleware attached to this request."""
        return request[UID]

    def actor(self, request: web.Request) -> Actor:
        """The anonymous browser user behind a request."""
        return Actor("web", self.uid(request),
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
