"""The playground: prompt, references, options, live progress and results with chat buttons."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import BodyPartReader, web

from adapters.web import cards
from adapters.web.context import MAX_FIELDS, MAX_FILES, UPLOAD_PATH, Console
from adapters.web.jobs import WebJob
from adapters.web.precheck import refusal
from adapters.web.render import Bundle, html, json_island, page
from bot.domain import Action, ImageData, ImageRequest, Options, Progress, Reply
from bot.errors import BotError, InputTooLarge, TooManyWaiting
from bot.messages import LOCALES
from bot.present import progress_text

#: How far past the limit an oversized file is read, to tell its size in the error.
MEASURE = 4
MAX_FIELD = 8_000
#: How many of a visitor's recent turns are looked at to find the ones of this browser.
HISTORY_SCAN = 100
ProgressFn = Callable[[Progress], Awaitable[None]]
LANGUAGES = {"en": "English", "zh-Hans": "简体中文", "zh-Hant": "繁體中文"}


class _Refused(Exception):
    """A request the adapter answers at once, with a translated message."""

    def __init__(self, text: str, status: int = 400) -> None:
        super().__init__(text)
        self.text = text
        self.status = status


class Playground:
    """Handlers of the public page and its API."""

    def __init__(self, console: Console, bundle: Bundle) -> None:
        self.c = console
        self.bundle = bundle
        self.env = bundle.env
        self.core = console.core

    def routes(self) -> list[web.RouteDef]:
        """The playground's routes."""
        return [web.get("/", self.index), web.post(UPLOAD_PATH, self.create),
                web.get("/api/jobs/{job}", self.status), web.post("/api/act", self.act),
                web.post("/api/locale", self.set_locale)]

    # ----- the page ------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        """The chat-like page with this visitor's recent results and its jobs still running."""
        c = self.c
        actor = c.actor(request)
        locale = await c.locale(request)
        saved = await self.core.prefs.get(actor)
        t = partial(c.t, locale)
        pending = [{"id": j.id, "prompt": j.label, "tag": self._tag(locale, j.kind),
                    "text": self.payload_text(j)}
                   for j in c.jobs.of_chat(c.chat(request).chat_id) if not j.done]
        labels: dict[str, Any] = {k: t(f"web.{k}") for k in (
            "brand", "demo_badge", "demo_note", "operator_link", "editing", "attach",
            "placeholder", "placeholder_edit", "send", "drop_hint", "drop_here", "welcome",
            "welcome_text")}
        return page(
            request, "playground", lang=locale, title=t("web.title"), script="playground.js",
            body_class="play", demo=c.demo, route_badge=t("web.route_badge", route=c.route),
            quota=html(await self.quota(request, locale)), cancel=t("web.cancel_edit"),
            history=[html(h) for h in await self.history(request, locale)], pending=pending,
            examples=t("web.examples").split("|"), model_label=t("settings.model"),
            size_label=t("settings.size"), aspect_label=t("settings.aspect"),
            your_id=t("web.your_id", user=actor.key), language=t("settings.language"),
            languages=LANGUAGES, **labels,
            config=json_island("config", self._config(locale, saved.model, saved.size,
                                                      saved.aspect, c.csrf(request))))

    async def history(self, request: web.Request, locale: str) -> list[str]:
        """Prompt bubbles and result cards of this browser's recent turns, oldest first."""
        core = self.core
        chat_key = self.c.chat(request).key  # a pooled actor's page shows this browser's turns only
        turns = [t for t in await core.store.recent_turns(HISTORY_SCAN, self.c.actor(request).key)
                 if t.chat_key == chat_key][-20:]
        out = []
        for turn in turns:
            card = cards.card_from_turn(core.messages, locale, turn, core.service.actions_for(turn))
            out.append(cards.prompt_bubble(self.env, core.messages, locale, turn.prompt,
                                           turn.kind))
            out.append(cards.render_card(self.env, core.messages, locale, card))
        return out

    def _tag(self, locale: str, kind: str) -> str:
        icon = cards.KIND_ICON.get(kind, "")
        return f"{icon} {self.c.t(locale, f'web.kind.{kind}')}" if icon else ""

    def _config(self, locale: str, model: str | None, size: str | None, aspect: str | None,
                csrf: str) -> dict[str, object]:
        settings = self.core.settings
        credit_usd = settings.quota.credit_usd
        catalog = self.core.service.catalog
        name = model if model in catalog else settings.bot.default_model
        spec = catalog[name]
        size = size if size in spec.sizes else (
            settings.bot.default_size if settings.bot.default_size in spec.sizes else spec.sizes[0])
        aspect = aspect if aspect in spec.aspects else (
            settings.bot.default_aspect if settings.bot.default_aspect in spec.aspects else "1:1")
        t = self.c.t
        strings = {k: t(locale, f"web.js.{k}") for k in (
            "sending", "same", "network", "remove", "not_image", "editing_result", "cost")}
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
            "maxFileBytes": int(settings.limits.max_input_mb * 1_000_000), "maxFiles": MAX_FILES,
            "strings": strings,
        }

    async def quota(self, request: web.Request, locale: str) -> str:
        service = self.core.service
        actor, chat = self.c.actor(request), self.c.chat(request)
        usage = await service.usage(actor, chat)
        return cards.quota_badge(self.env, self.core.messages, locale, usage,
                                 await service.quota_text(actor, chat))

    # ----- jobs ----------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        """Start a generation (or an edit, with ``parent``) from the composer's form."""
        c = self.c
        actor, chat = c.actor(request), c.chat(request)
        locale = await c.locale(request)
        try:
            fields, files = await self._read_form(request, locale)
            self._check_capacity(actor.key, locale)
        except _Refused as err:
            return web.json_response({"error": err.text}, status=err.status)
        parent = fields.get("parent") or None
        options = Options(model=fields.get("model") or None, size=fields.get("size") or None,
                          aspect=fields.get("aspect") or None)
        reason = await refusal(self.core, actor, chat, options, len(files), parent, locale)
        if reason is not None:  # answered now, so the page keeps the prompt and the files
            return web.json_response({"error": reason}, status=422)
        req = ImageRequest(actor=actor, chat=chat, prompt=fields.get("prompt", ""),
                           references=tuple(files), options=options,
                           kind="edit" if parent else "imagine", parent_turn_id=parent)
        service = self.core.service

        async def start(progress: ProgressFn) -> Reply:
            work = service.edit(req, None, progress) if parent else service.imagine(req, progress)
            return await self.core.api.attempt(actor, work)

        job = c.jobs.submit(actor.key, chat.chat_id, req.prompt, locale, start, req.kind)
        return web.json_response(await self.payload(request, job), status=202)

    async def act(self, request: web.Request) -> web.Response:
        """A result button: reroll, 2K/4K, variations (a new job) or delete (at once)."""
        c, service = self.c, self.core.service
        actor, chat = c.actor(request), c.chat(request)
        locale = await c.locale(request)
        form = await request.post()
        raw = form.get("action")
        action = Action.decode(raw) if isinstance(raw, str) else None
        if action is None or action.kind == "edit":
            return web.json_response({"error": c.t(locale, "web.bad_request")}, status=400)
        try:
            await self.core.api.owned(actor, action.turn_id)
        except BotError as err:
            return web.json_response({"error": self.core.presenter.error(locale, err)},
                                     status=403)
        if action.kind == "delete":
            try:
                await service.delete(actor, action.turn_id)
            except BotError as err:
                return web.json_response({"error": self.core.presenter.error(locale, err)},
                                         status=400)
            return web.json_response({"deleted": action.turn_id,
                                      "text": c.t(locale, "result.deleted")})
        try:
            self._check_capacity(actor.key, locale)
        except _Refused as err:
            return web.json_response({"error": err.text}, status=err.status)

        async def start(progress: ProgressFn) -> Reply:
            return await self.core.api.attempt(actor, service.act(actor, chat, action, progress))

        job = c.jobs.submit(actor.key, chat.chat_id,
                            cards.button_label(self.core.messages, locale, action), locale, start,
                            action.kind)
        return web.json_response(await self.payload(request, job), status=202)

    async def status(self, request: web.Request) -> web.Response:
        """Where a job is: waiting, queued (position), running (seconds), or its result."""
        job = self.c.jobs.get(request.match_info["job"], self.c.actor(request).key)
        if job is None:
            raise web.HTTPNotFound()
        return web.json_response(await self.payload(request, job))

    def payload_text(self, job: WebJob) -> str:
        """Where an unfinished job is, in words: waiting, queued (position) or generating (s)."""
        return (progress_text(self.core.messages, job.locale, job.stage, job.position,
                              job.elapsed(time.monotonic()))
                or self.c.t(job.locale, "web.preparing"))

    async def payload(self, request: web.Request, job: WebJob) -> dict[str, object]:
        """A job's state for the page: its progress text, or its card (or error) and the quota."""
        t, locale = self.c.t, job.locale
        reply = job.reply
        if reply is None:
            data: dict[str, object] = {
                "job": job.id, "state": job.stage, "position": job.position,
                "elapsed": job.elapsed(time.monotonic()), "text": self.payload_text(job)}
            if job.stage == "started":  # the page counts the seconds itself between pushes
                data["tick"] = t(locale, "progress.started", elapsed="{elapsed}")
                data["running_ms"] = int(1000 * (time.monotonic() - (job.started or job.created)))
            return data
        if reply.ok and reply.turn_id and reply.images:
            prompt = reply.text.splitlines()[0] if reply.text else ""
            fragment = cards.render_card(self.env, self.core.messages, locale,
                                         cards.card_from_reply(reply, prompt))
        else:
            fragment = cards.error_bubble(self.env,
                                          reply.text or t(locale, reply.error or "error.banned"))
        return {"job": job.id, "state": "done" if reply.ok else "failed", "html": fragment,
                "quota": await self.quota(request, locale)}

    def _check_capacity(self, owner: str, locale: str) -> None:
        limits = self.core.settings.limits
        waiting = self.c.jobs.active(owner)
        if waiting >= limits.per_user_concurrency + limits.per_user_queued:
            raise _Refused(self.core.presenter.error(locale, TooManyWaiting(waiting)), 429)

    async def _read_form(self, request: web.Request, locale: str
                         ) -> tuple[dict[str, str], list[ImageData]]:
        """Text fields and files, streamed with per-file, field-count and whole-body limits."""
        if request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            if any(isinstance(v, str) and len(v.encode()) > MAX_FIELD for v in form.values()):
                raise _Refused(self.c.t(locale, "web.field_too_long"), 413)
            return {k: v for k, v in form.items() if isinstance(v, str)}, []
        if not request.content_type.startswith("multipart/"):
            raise _Refused(self.c.t(locale, "web.bad_request"))
        limit = int(self.core.settings.limits.max_input_mb * 1_000_000)
        body = _Counter(request, self.c.body_cap(request.path),
                        _Refused(self.c.t(locale, "web.body_too_big",
                                          limit_mb=f"{self.c.body_cap(request.path) / 1e6:g}"), 413))
        reader = await request.multipart()
        fields: dict[str, str] = {}
        files: list[ImageData] = []
        parts = 0
        while (part := await reader.next()) is not None:
            body.check()
            parts += 1
            if not isinstance(part, BodyPartReader):
                raise _Refused(self.c.t(locale, "web.bad_request"))
            if parts > MAX_FIELDS + MAX_FILES:
                raise _Refused(self.c.t(locale, "web.too_many_fields"), 413)
            if part.name != "files":
                data, size = await _read_part(part, MAX_FIELD, body)
                if size > MAX_FIELD:  # refused, not cut: the rest would still have to be read
                    raise _Refused(self.c.t(locale, "web.field_too_long"), 413)
                if part.name:
                    fields[part.name] = data.decode("utf-8", "replace")
                continue
            if len(files) >= MAX_FILES:
                raise _Refused(self.c.t(locale, "web.too_many_files", limit=MAX_FILES))
            data, size = await _read_part(part, limit, body)
            if size > limit:
                raise _Refused(self.core.presenter.error(locale, InputTooLarge(size / 1e6,
                                                                              limit / 1e6)), 413)
            if data:
                files.append(ImageData(data, part.headers.get("Content-Type", ""),
                                       name=part.filename or ""))
        body.check()
        return fields, files

    # ----- language -----------------------------------------------------------------------

    async def set_locale(self, request: web.Request) -> web.Response:
        """Save the visitor's language (the same setting as /settings in the chats)."""
        value = (await request.post()).get("locale")
        if value not in LOCALES:
            raise web.HTTPBadRequest()
        await self.core.prefs.update(self.c.actor(request), "locale", str(value))
        return web.json_response({"locale": value})


class _Counter:
    """Counts the bytes a request body has delivered so far (chunked bodies have no length)."""

    def __init__(self, request: web.Request, cap: int, refusal: _Refused) -> None:
        self._stream = request.content
        self._cap = cap
        self._refusal = refusal

    def check(self) -> None:
        """Refuse once more than the cap has arrived (read-ahead is one small buffer at most)."""
        if self._stream.total_bytes > self._cap:
            raise self._refusal


async def _read_part(part: BodyPartReader, limit: int, body: _Counter) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of a part, and its length (measured up to a few times the limit)."""
    data = bytearray()
    size = 0
    while chunk := await part.read_chunk(65536):
        body.check()
        size += len(chunk)
        if size <= limit:
            data += chunk
        elif size > MEASURE * limit:
            break  # clearly too large: stop reading rather than swallow an endless upload
    return bytes(data), size
