"""The playground page: prompt, references, options, the visitor's results, and its language."""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from adapters.web import inbound, progress, widgets
from adapters.web.pages import Bundle, html, json_island, page
from adapters.web.runtime import Runtime

LANGUAGES = {"en": "English", "zh-Hans": "简体中文", "zh-Hant": "繁體中文"}


class Playground:
    """The public page and its language setting."""

    def __init__(self, rt: Runtime, bundle: Bundle) -> None:
        self.rt = rt
        self.env = bundle.env

    def routes(self) -> list[web.RouteDef]:
        """The page's routes."""
        return [web.get("/", self.index), web.post("/api/locale", self.set_locale)]

    async def index(self, request: web.Request) -> web.Response:
        """The chat-like page with this visitor's recent results and its jobs still running."""
        rt, api = self.rt, self.rt.api
        actor, chat = inbound.actor(request), inbound.chat(request)
        locale = await rt.locale(request)
        saved = await api.prefs.get(actor)
        t = partial(rt.t, locale)
        pending = [{"id": j.id, "prompt": j.label, "tag": widgets.kind_tag(api, locale, j.kind),
                    "text": progress.status_text(rt, j)}
                   for j in rt.of_chat(chat.chat_id) if not j.done]
        labels: dict[str, Any] = {k: t(f"web.{k}") for k in (
            "brand", "demo_badge", "demo_note", "operator_link", "editing", "attach",
            "placeholder", "placeholder_edit", "send", "drop_hint", "drop_here", "welcome",
            "welcome_text")}
        history = await widgets.history(self.env, api, locale, actor, chat)
        return page(
            request, "playground", lang=locale, title=t("web.title"), script="playground.js",
            body_class="play", demo=rt.demo, route_badge=t("web.route_badge", route=rt.route),
            quota=html(await widgets.quota_badge(self.env, api, locale, actor, chat)),
            cancel=t("web.cancel_edit"), history=[html(h) for h in history], pending=pending,
            examples=t("web.examples").split("|"), model_label=t("settings.model"),
            size_label=t("settings.size"), aspect_label=t("settings.aspect"),
            n_label=t("web.n_short"), style_label=t("settings.style"),
            no_style=t("settings.no_style"), describe_label=t("web.describe"),
            n_default=saved.n or 1, style_default=saved.style or "none",
            styles=[(name, api.style_label(locale, name)) for name in api.style_names()],
            your_id=t("web.your_id", user=actor.key), language=t("settings.language"),
            languages=LANGUAGES, **labels,
            config=json_island("config", self._config(locale, saved.model, saved.size,
                                                      saved.aspect, rt.csrf(request))))

    def _config(self, locale: str, model: str | None, size: str | None, aspect: str | None,
                csrf: str) -> dict[str, object]:
        """The composer's choices and words, for the page's script."""
        settings = self.rt.api.settings
        credit_usd = settings.quota.credit_usd
        catalog = self.rt.api.models
        name = model if model is not None and model in catalog else settings.bot.default_model
        spec = catalog[name]
        size = size if size in spec.sizes else (
            settings.bot.default_size if settings.bot.default_size in spec.sizes else spec.sizes[0])
        aspect = aspect if aspect in spec.aspects else (
            settings.bot.default_aspect if settings.bot.default_aspect in spec.aspects else "1:1")
        t = self.rt.t
        strings = {k: t(locale, f"web.js.{k}") for k in (
            "sending", "same", "network", "remove", "not_image", "editing_result", "cost")}
        strings["describe_usage"] = t(locale, "describe.usage")
        strings["too_many_refs"] = t(locale, "error.too_many_refs", model="{model}",
                                     limit="{limit}", count="{count}")
        strings["too_large"] = t(locale, "error.too_large", size_mb="{size_mb}",
                                 limit_mb=f"{settings.limits.max_input_mb:g}")
        return {
            "csrf": csrf, "defaults": {"model": name, "size": size, "aspect": aspect},
            "models": {m.name: {"sizes": [[s, t(locale, "web.size_option", size=s,
                                                 cost=m.credit_cost(s, credit_usd))]
                                          for s in m.sizes],
                                "aspects": list(m.aspects), "maxRefs": m.max_references,
                                "costs": {s: m.credit_cost(s, credit_usd) for s in m.sizes}}
                       for m in catalog.values()},
            "maxFileBytes": int(settings.limits.max_input_mb * 1_000_000),
            "maxFiles": inbound.MAX_FILES, "strings": strings,
        }

    async def set_locale(self, request: web.Request) -> web.Response:
        """Save the visitor's language (the same setting as /settings in the chats)."""
        value = (await request.post()).get("locale")
        if not isinstance(value, str) or value not in self.rt.api.prefs.choices("locale"):
            raise web.HTTPBadRequest()
        await self.rt.api.prefs.update(inbound.actor(request), "locale", value)
        return web.json_response({"locale": value})
