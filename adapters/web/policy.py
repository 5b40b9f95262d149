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

from adapters.web import inbound
from adapters.web.pages import Bundle, page
from adapters.web.runtime import Runtime
from bot.api import GROUP_KEYS, BotError, ChatRef, GroupSettings

log = logging.getLogger(__name__)


def chat_for(key: str) -> ChatRef | None:
    """The ChatRef whose group is ``key`` (``discord:GUILD`` or ``telegram:CHAT``), if valid."""
    platform, _, ident = key.partition(":")
    if platform not in ("discord", "telegram") or not ident.lstrip("-").isdigit():
        return None
    return ChatRef(platform, ident, "group", group_id=ident if platform == "discord" else None)


class PolicyView:
    """Handlers under /operator/policy."""

    def __init__(self, rt: Runtime, bundle: Bundle) -> None:
        self.rt = rt
        self.api = rt.api

    def routes(self) -> list[web.RouteDef]:
        """The policy page, its JSON, and the group settings form."""
        return [web.get("/operator/policy", self.index),
                web.get("/operator/policy.json", self.as_json),
                web.post("/operator/policy", self.change)]

    async def _groups(self) -> list[tuple[str, str, GroupSettings]]:
        return [(key, by or "", group) for key, group, by in await self.api.group_policies()]

    async def as_json(self, request: web.Request) -> web.Response:
        """Route health, failovers and group settings as JSON."""
        if not self.rt.operator(request):
            raise web.HTTPForbidden()
        groups = [{"group": key, "by": by, "settings": asdict(group)}
                  for key, by, group in await self._groups()]
        routing = {k: v for k, v in self.api.routing_view().items() if k != "recent"}
        return web.json_response({**routing, "groups": groups})

    async def index(self, request: web.Request, flash: str = "", kind: str = "") -> web.Response:
        """The page (the login form lives at /operator)."""
        if not self.rt.operator(request):
            raise web.HTTPSeeOther("/operator")
        locale = self.rt.page_locale(request)
        t = partial(self.rt.t, locale)
        routing = self.api.routing_view()
        now = time.time()
        failovers = [{"ago": int(now - r["at"]), "model": r["model"], "source": r["from"],
                      "target": r["to"], "reason": r["reason"]} for r in routing["failovers"]]
        groups = [{"group": key, "by": by, "text": self.api.group_text(locale, group)}
                  for key, by, group in await self._groups()]
        return page(request, "policy", lang=locale, title=t("web.policy.title"), body_class="op",
                    t=t, routes=routing["routes"], failovers=failovers, groups=groups,
                    keys=(*GROUP_KEYS, "reset"), csrf=self.rt.csrf(request), flash=flash,
                    flash_kind=kind)

    async def change(self, request: web.Request) -> web.Response:
        """Change one setting of one group."""
        if not self.rt.operator(request):
            raise web.HTTPForbidden()
        locale = self.rt.page_locale(request)
        form = await request.post()
        key, setting, value = (str(form.get(n) or "").strip() for n in ("group", "setting", "value"))
        chat = chat_for(key)
        if chat is None:
            return await self.index(request, self.rt.t(locale, "web.policy.bad_group"), "bad")
        try:
            await self.api.configure_group(inbound.OPERATOR, chat, [setting, *value.split()],
                                           group_admin=True)
        except BotError as err:
            told = await self.rt.told(inbound.operator(request), err)
            return await self.index(request, told.text, "bad")
        log.info("web: operator set %s of %s", setting, key)
        return await self.index(request, self.rt.t(locale, "group.saved"), "ok")

