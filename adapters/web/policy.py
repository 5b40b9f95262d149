"""The operator's policy page: route health, the last failovers, and every group's settings.

``/operator/policy`` (HTML) and ``/operator/policy.json`` need the operator session; the form
changes one setting of one group, as that group's admins would with /config (the operator is the
global ceiling, so may change any group).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from functools import partial

from aiohttp import web

from adapters.web.context import OPERATOR, Console
from adapters.web.render import Bundle, page
from bot.domain import ChatRef
from bot.errors import BotError
from bot.groups import KEYS, GroupSettings, describe

log = logging.getLogger(__name__)


def chat_for(key: str) -> ChatRef | None:
    """The ChatRef whose group is ``key`` (``discord:GUILD`` or ``telegram:CHAT``), if valid."""
    platform, _, ident = key.partition(":")
    if platform not in ("discord", "telegram") or not ident.lstrip("-").isdigit():
        return None
    return ChatRef(platform, ident, "group", group_id=ident if platform == "discord" else None)


class PolicyView:
    """Handlers under /operator/policy."""

    def __init__(self, console: Console, bundle: Bundle) -> None:
        self.c = console
        self.core = console.core

    def routes(self) -> list[web.RouteDef]:
        """The policy page, its JSON, and the group settings form."""
        return [web.get("/operator/policy", self.index),
                web.get("/operator/policy.json", self.as_json),
                web.post("/operator/policy", self.change)]

    async def _groups(self) -> list[tuple[str, str, GroupSettings]]:
        return [(key, by or "", GroupSettings.loads(raw))
                for key, raw, by in await self.core.store.all_group_settings()]

    async def as_json(self, request: web.Request) -> web.Response:
        """Route health, failovers and group settings as JSON."""
        if not self.c.operator(request):
            raise web.HTTPForbidden()
        groups = [{"group": key, "by": by, "settings": asdict(group)}
                  for key, by, group in await self._groups()]
        return web.json_response({**self.core.service.routing.view(), "groups": groups})

    async def index(self, request: web.Request, flash: str = "", kind: str = "") -> web.Response:
        """The page (the login form lives at /operator)."""
        if not self.c.operator(request):
            raise web.HTTPSeeOther("/operator")
        locale = self.c.page_locale(request)
        t = partial(self.c.t, locale)
        routing = self.core.service.routing
        now = time.time()
        failovers = [{"ago": int(now - r.at), "model": r.model, "source": r.source,
                      "target": r.target, "reason": r.reason} for r in routing.recent]
        groups = [{"group": key, "by": by, "text": describe(self.c.t, locale, group)}
                  for key, by, group in await self._groups()]
        return page(request, "policy", lang=locale, title=t("web.policy.title"), body_class="op",
                    t=t, routes=routing.view()["routes"], failovers=failovers, groups=groups,
                    keys=(*KEYS, "reset"), csrf=self.c.csrf(request), flash=flash,
                    flash_kind=kind)

    async def change(self, request: web.Request) -> web.Response:
        """Change one setting of one group."""
        if not self.c.operator(request):
            raise web.HTTPForbidden()
        locale = self.c.page_locale(request)
        form = await request.post()
        key, setting, value = (str(form.get(n) or "").strip() for n in ("group", "setting", "value"))
        chat = chat_for(key)
        if chat is None:
            return await self.index(request, self.c.t(locale, "web.policy.bad_group"), "bad")
        try:
            await self.core.service.groups.configure(OPERATOR, chat, [setting, *value.split()],
                                                     group_admin=True)
        except BotError as err:
            return await self.index(request, self.core.presenter.error(locale, err), "bad")
        log.info("web: operator set %s of %s", setting, key)
        return await self.index(request, self.c.t(locale, "group.saved"), "ok")

