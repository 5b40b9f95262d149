"""Requests that start jobs: the composer (a new image, or an edit of a result) and the result
buttons (a table from action kind to handler), and a job's state for the page that polls it.

A job runs in the background under the runtime's guard (runtime.py); its page hears of it by
server push (progress.py). A refusal the core can tell before the job (too many references,
too few credits) is answered at once, so the page keeps the prompt and the files.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from aiohttp import web

from adapters.web import inbound, progress, widgets
from adapters.web.deliver import deliver
from adapters.web.pages import Bundle
from adapters.web.runtime import Runtime, WebJob
from bot.api import (
    Action,
    Actor,
    ChatRef,
    ImageRequest,
    ProgressCallback,
    Reply,
    TooManyWaiting,
)

Button = Callable[[web.Request, Actor, ChatRef, str, Action], Awaitable[web.Response]]


class Handlers:
    """The playground's job routes."""

    def __init__(self, rt: Runtime, bundle: Bundle) -> None:
        self.rt = rt
        self.env = bundle.env
        self.buttons: dict[str, Button] = {
            "reroll": self.start_action, "upscale": self.start_action,
            "variations": self.start_action, "delete": self.delete}

    def routes(self) -> list[web.RouteDef]:
        """The job routes."""
        return [web.post(inbound.UPLOAD_PATH, self.create), web.post("/api/act", self.act),
                web.get("/api/jobs/{job}", self.status),
                web.post(inbound.DESCRIBE_PATH, self.describe)]

    async def _started(self, request: web.Request, job: WebJob) -> web.Response:
        return web.json_response(await progress.payload(self.rt, self.env, request, job),
                                 status=202)

    def _check_capacity(self, owner: str) -> None:
        """TooManyWaiting once the visitor has as many jobs as it may run and queue."""
        limits = self.rt.api.settings.limits
        waiting = self.rt.active(owner)
        if waiting >= limits.per_user_concurrency + limits.per_user_queued:
            raise TooManyWaiting(waiting)

    async def create(self, request: web.Request) -> web.Response:
        """Start a generation (or an edit, with ``parent``) from the composer's form."""
        rt, api = self.rt, self.rt.api
        actor, chat = inbound.actor(request), inbound.chat(request)
        locale = await rt.locale(request)
        fields, files = await inbound.read_form(
            request, partial(rt.t, locale), body_cap=rt.body_cap(request.path),
            file_limit=int(api.settings.limits.max_input_mb * 1_000_000))
        self._check_capacity(actor.key)
        parent = fields.get("parent") or None
        options = inbound.options(fields)
        await api.precheck(actor, chat, options, len(files), parent)
        req = ImageRequest(actor=actor, chat=chat, prompt=inbound.prompt_of(fields),
                           references=tuple(files), options=options,
                           kind="edit" if parent else "imagine", parent_turn_id=parent)

        async def work(report: ProgressCallback) -> Reply:
            made = await (api.edit(req, None, report) if parent else api.imagine(req, report))
            return await deliver(api, made, chat.chat_id)

        return await self._started(request, rt.submit(actor, chat.chat_id, req.prompt, locale,
                                                      work, req.kind))

    async def act(self, request: web.Request) -> web.Response:
        """A result button of the visitor's own result, by its kind."""
        actor, chat = inbound.actor(request), inbound.chat(request)
        locale = await self.rt.locale(request)
        action = await inbound.action(request)
        button = self.buttons.get(action.kind) if action is not None else None
        if action is None or button is None:
            raise inbound.Refusal(self.rt.t(locale, "web.bad_request"))
        await self.rt.api.owned(actor, action.turn_id)
        return await button(request, actor, chat, locale, action)

    async def start_action(self, request: web.Request, actor: Actor, chat: ChatRef,
                           locale: str, action: Action) -> web.Response:
        """Reroll, 2K/4K or variations: a new job."""
        api = self.rt.api
        self._check_capacity(actor.key)

        async def work(report: ProgressCallback) -> Reply:
            return await deliver(api, await api.act(actor, chat, action, report), chat.chat_id)

        label = widgets.button_label(api, locale, action)
        return await self._started(request, self.rt.submit(actor, chat.chat_id, label, locale,
                                                           work, action.kind))

    async def delete(self, request: web.Request, actor: Actor, chat: ChatRef, locale: str,
                     action: Action) -> web.Response:
        """Delete a result at once (the page removes its card)."""
        await self.rt.api.delete(actor, action.turn_id)
        return web.json_response({"deleted": action.turn_id,
                                  "text": self.rt.t(locale, "result.deleted")})

    async def describe(self, request: web.Request) -> web.Response:
        """/describe on the page: prompts for the posted image, each with a button that runs it."""
        rt, api = self.rt, self.rt.api
        actor, chat = inbound.actor(request), inbound.chat(request)
        locale = await rt.locale(request)
        _, files = await inbound.read_form(
            request, partial(rt.t, locale), body_cap=rt.body_cap(request.path),
            file_limit=int(api.settings.limits.max_input_mb * 1_000_000))
        if not files:
            raise inbound.Refusal(rt.t(locale, "describe.usage"))
        described = await api.describe(actor, chat, files[0])
        return web.json_response({"html": widgets.described(self.env, described),
                                  "prompts": list(described.prompts)})

    async def status(self, request: web.Request) -> web.Response:
        """Where a job is: waiting, queued (position), running (seconds), or its result."""
        job = self.rt.job(request.match_info["job"], inbound.actor(request).key)
        if job is None:
            raise web.HTTPNotFound()
        return web.json_response(await progress.payload(self.rt, self.env, request, job))
