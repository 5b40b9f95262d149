"""The operator view: token login, spending, top users, live queue, gallery, grant and ban."""

from __future__ import annotations

import asyncio
import logging
import re
from functools import partial
from html import escape

from aiohttp import web

from adapters.web import dashboard as dash
from adapters.web import inbound, shop_view
from adapters.web.pages import Bundle, html, page
from adapters.web.runtime import Runtime
from adapters.web.security import SESSION_COOKIE, SESSION_SECONDS, same_token
from bot.api import MAX_GRANT, BotError

log = logging.getLogger(__name__)
USER_RE = re.compile(r"^(telegram|discord|web|cli):[0-9A-Za-z_-]{1,64}$")
COMMAND = "imagine-bot console-token"


def _with_code(text: str, *literals: str) -> str:
    """Escaped text with the given literals (a command, a variable name) set as code."""
    out = escape(text)
    for literal in literals:
        out = out.replace(escape(literal), f"<code>{escape(literal)}</code>")
    return out


def see_other(location: str) -> web.Response:
    """A 303 redirect (after a form POST)."""
    return web.Response(status=303, headers={"Location": location})


class OperatorView:
    """Handlers under /operator."""

    def __init__(self, rt: Runtime, bundle: Bundle) -> None:
        self.rt = rt
        self.bundle = bundle
        self.api = rt.api
        self._flash: dict[str, tuple[str, str]] = {}

    def routes(self) -> list[web.RouteDef]:
        """The operator's routes."""
        return [web.get("/operator", self.index), web.post("/operator/login", self.login),
                web.post("/operator/logout", self.logout), web.post("/operator/grant", self.grant),
                web.post("/operator/ban", self.ban), web.get("/operator/live", self.live),
                web.post("/operator/refund", self.refund)]

    def _login_page(self, request: web.Request, error: str = "", status: int = 200
                    ) -> web.Response:
        locale = self.rt.page_locale(request)
        t = partial(self.rt.t, locale)
        return page(request, "login", lang=locale, title=t("web.op.login_title"),
                    body_class="login", status=status,
                    intro=html(_with_code(t("web.op.login_intro", command=COMMAND,
                                            env=self.api.settings.web.token_env),
                                          COMMAND, self.api.settings.web.token_env)),
                    label=t("web.op.token"), submit=t("web.op.login"), csrf=self.rt.csrf(request),
                    back=t("web.op.back"), error=error)

    async def login(self, request: web.Request) -> web.Response:
        """Check the token; a right one always opens a session, wrong ones are slowed per address."""
        t = partial(self.rt.t, self.rt.page_locale(request))
        client = request.remote or "unknown"
        given = (await request.post()).get("token")
        if not isinstance(given, str) or not same_token(given, self.rt.token):
            wait = self.rt.limiter.failed(client)
            log.warning("web: rejected operator login from %s", client)
            if wait:
                await asyncio.sleep(self.rt.limiter.tarpit)
                return self._login_page(request, t("web.op.too_many", seconds=wait), status=429)
            return self._login_page(request, t("web.op.wrong_token"), status=401)
        self.rt.limiter.succeeded(client)
        response = see_other("/operator")
        response.set_cookie(SESSION_COOKIE, await self.rt.sessions.open(),
                            max_age=SESSION_SECONDS,
                            path="/", httponly=True, samesite="Strict",
                            secure=self.rt.network.secure(request))
        log.info("web: operator logged in from %s", client)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        """End the session."""
        await self.rt.sessions.close(request.cookies.get(SESSION_COOKIE))
        response = see_other("/operator")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def index(self, request: web.Request) -> web.Response:
        """The dashboard, or the login form without a session."""
        if not self.rt.operator(request):
            return self._login_page(request)
        rt, api = self.rt, self.api
        locale = rt.page_locale(request)
        t = partial(rt.t, locale)
        report = await api.reports.operator()
        ov = report.overview
        zone = api.zone()
        snap = api.snapshot()
        kind, text = self._flash.pop(request.cookies.get(SESSION_COOKIE, ""), ("", ""))
        env = self.bundle.env
        return page(
            request, "operator", lang=locale, title=t("web.op.title"), script="operator.js",
            body_class="op", brand=t("web.brand"), playground=t("web.op.playground"),
            logout=t("web.op.logout"), policy=t("web.policy.title"), csrf=rt.csrf(request),
            flash=text, flash_kind=kind,
            kpis=html(dash.kpis(env, t, ov, snap)), spend_title=t("web.op.spend_title"),
            chart=html(dash.chart_box(env, t, ov)), models_title=t("web.op.by_model"),
            models=html(dash.totals_table(env, t, t("web.op.model"), ov.by_model)),
            platforms_title=t("web.op.by_platform"),
            platforms=html(dash.totals_table(env, t, t("web.op.platform"), ov.by_platform)),
            rates=[dash.rates_line(t, t("web.op.period_today"), ov.rates_today),
                   dash.rates_line(t, t("web.op.period_30"), ov.rates)],
            rates_title=t("web.op.rates_title"), users_title=t("web.op.top_users"),
            users=html(dash.users_table(env, t, ov.top_users, report.standing, rt.csrf(request),
                                        zone)),
            live_title=t("web.op.live"), live=html(dash.live(env, t, snap, rt.running())),
            manage_title=t("web.op.manage"), user_label=t("web.op.user"),
            user_hint=t("web.op.user_hint"), credits_label=t("web.op.credits"),
            grant=t("web.op.grant"), ban=t("web.op.ban"), unban=t("web.op.unban"),
            ban_title=t("web.op.ban_title"), gallery_title=t("web.op.recent"),
            gallery=html(dash.gallery(env, t, report.gallery, zone)),
            shop=html(await shop_view.section(env, t, api, rt.csrf(request), zone)))

    async def live(self, request: web.Request) -> web.Response:
        """The live queue fragment, for the page's refresh."""
        if not self.rt.operator(request):
            raise web.HTTPForbidden()
        t = partial(self.rt.t, self.rt.page_locale(request))
        fragment = dash.live(self.bundle.env, t, self.api.snapshot(), self.rt.running())
        return web.json_response({"html": fragment})

    def _done(self, request: web.Request, kind: str, text: str) -> web.Response:
        self._flash[request.cookies.get(SESSION_COOKIE, "")] = (kind, text)
        return see_other("/operator")

    async def _target(self, request: web.Request) -> tuple[str | None, str]:
        form = await request.post()
        user = form.get("user")
        user = user.strip() if isinstance(user, str) else ""
        return (user if USER_RE.match(user) else None), user

    async def grant(self, request: web.Request) -> web.Response:
        """Give a user bonus credits (negative takes them back)."""
        if not self.rt.operator(request):
            raise web.HTTPForbidden()
        locale = self.rt.page_locale(request)
        target, _ = await self._target(request)
        if target is None:
            return self._done(request, "bad", self.rt.t(locale, "admin.bad_user"))
        raw = (await request.post()).get("credits")
        try:
            amount = int(raw) if isinstance(raw, str) else 0
        except ValueError:
            amount = 0
        if not amount or abs(amount) > MAX_GRANT:
            return self._done(request, "bad", self.rt.t(locale, "web.op.bad_credits",
                                                       limit=MAX_GRANT))
        try:
            text = await self.api.admin.grant(inbound.OPERATOR, target, amount, locale)
        except BotError as err:
            return self._done(request, "bad", (await self.rt.told(inbound.operator(request),
                                                                 err)).text)
        log.info("web: operator granted %d credits to %s", amount, target)
        return self._done(request, "ok", text)

    async def refund(self, request: web.Request) -> web.Response:
        """Refund a payment through its platform; its unused credits are taken back."""
        if not self.rt.operator(request):
            raise web.HTTPForbidden()
        kind, text = await shop_view.refund(self.rt, request, self.rt.page_locale(request))
        return self._done(request, kind, text)

    async def ban(self, request: web.Request) -> web.Response:
        """Block or unblock a user."""
        if not self.rt.operator(request):
            raise web.HTTPForbidden()
        locale = self.rt.page_locale(request)
        target, _ = await self._target(request)
        if target is None:
            return self._done(request, "bad", self.rt.t(locale, "admin.bad_user"))
        banned = (await request.post()).get("banned") == "1"
        try:
            text = await self.api.admin.ban(inbound.OPERATOR, target, banned, locale)
        except BotError as err:
            return self._done(request, "bad", (await self.rt.told(inbound.operator(request),
                                                                 err)).text)
        log.info("web: operator %s %s", "banned" if banned else "unbanned", target)
        return self._done(request, "ok", text)
