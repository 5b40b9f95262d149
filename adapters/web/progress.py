"""Showing a job's progress: its state for the page, and the server-sent event streams.

On every (re)connection the playground's stream starts with a ``sync`` event: the browser's jobs
this server knows and its recent results, so a reloaded page, or one whose server restarted,
catches up by itself. Then a ``job`` event follows each change of one of the browser's jobs.

A browser's EventSource reconnects by itself after a dropped stream, but not after an answer
other than 200 (it "fails the connection":
https://html.spec.whatwg.org/multipage/server-sent-events.html#sse-processing-model), so the
page's script reopens it itself after such an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from functools import partial
from typing import Any

import jinja2
from aiohttp import web

from adapters.web import dashboard as dash
from adapters.web import inbound, widgets
from adapters.web.runtime import Runtime, WebJob

#: A comment line this often keeps proxies and the browser from closing a quiet stream.
KEEPALIVE_SECONDS = 15.0
#: What the browser waits before reconnecting after the stream drops (the SSE ``retry`` field).
RETRY_MS = 1000
_TURN_ID = re.compile(r'data-turn="([^"]+)"')


def frame(event: str, data: object) -> bytes:
    """One server-sent event (JSON on a single data line)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def status_text(rt: Runtime, job: WebJob) -> str:
    """Where an unfinished job is, in words: waiting, queued (position) or generating (s)."""
    said = job.event and rt.api.progress_text(job.locale, job.event, job.elapsed(time.monotonic()))
    return said or rt.t(job.locale, "web.preparing")


async def payload(rt: Runtime, env: jinja2.Environment, request: web.Request,
                  job: WebJob) -> dict[str, object]:
    """A job's state for the page: its progress text, or its card (or error) and the quota."""
    locale, reply = job.locale, job.reply
    if reply is None:
        data: dict[str, object] = {
            "job": job.id, "state": job.stage, "position": job.position,
            "elapsed": job.elapsed(time.monotonic()), "text": status_text(rt, job)}
        if job.stage == "started":  # the page counts the seconds itself between pushes
            data["tick"] = rt.t(locale, "progress.started", elapsed="{elapsed}")
            data["running_ms"] = int(1000 * (time.monotonic() - (job.started or job.created)))
        return data
    if reply.ok and reply.turn_id and reply.images:
        prompt = reply.text.splitlines()[0] if reply.text else ""
        fragment = widgets.render_card(env, rt.api, locale, widgets.card_from_reply(reply, prompt))
    else:
        fragment = widgets.error_bubble(env, reply.text or rt.t(locale, reply.error or "error.banned"))
    return {"job": job.id, "state": "done" if reply.ok else "failed", "html": fragment,
            "quota": await widgets.quota_badge(env, rt.api, locale, inbound.actor(request),
                                               inbound.chat(request))}


class Live:
    """The ``/api/events`` stream of the playground."""

    def __init__(self, rt: Runtime, env: jinja2.Environment) -> None:
        self.rt = rt
        self.env = env

    def routes(self) -> list[web.RouteDef]:
        """The stream's route."""
        return [web.get("/api/events", self.events)]

    async def sync(self, request: web.Request) -> dict[str, object]:
        """What the page should show now: this server's jobs of the browser and recent results."""
        rt, env = self.rt, self.env
        locale = await rt.locale(request)
        actor, chat = inbound.actor(request), inbound.chat(request)
        jobs = [await payload(rt, env, request, j) for j in rt.of_chat(chat.chat_id)]
        turns = []
        for fragment in await widgets.history(env, rt.api, locale, actor, chat):
            found = _TURN_ID.search(fragment)
            if found:  # result cards only; prompt bubbles come with them on the page
                turns.append({"id": found.group(1), "html": fragment})
        return {"jobs": jobs, "turns": turns,
                "quota": await widgets.quota_badge(env, rt.api, locale, actor, chat),
                "interrupted": rt.t(locale, "web.interrupted")}

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Stream this browser's job changes until the page goes away or the server stops."""
        rt = self.rt
        if rt.closing.is_set():  # the page reopens the stream once a server answers again
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "1"})
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})  # nginx and similar would hold the events back
        await response.prepare(request)
        with rt.listen(inbound.chat(request).chat_id) as queue:
            closing = asyncio.ensure_future(rt.closing.wait())
            try:
                await response.write(f"retry: {RETRY_MS}\n\n".encode())
                await response.write(frame("sync", await self.sync(request)))
                while not rt.closing.is_set():
                    job = await _next(queue, closing)
                    if job is not None:
                        await response.write(frame("job", await payload(rt, self.env, request,
                                                                        job)))
                    elif not rt.closing.is_set():
                        await response.write(b": keepalive\n\n")
                await response.write(frame("bye", {}))
            except ConnectionResetError:
                pass  # the page went away
            finally:
                closing.cancel()
        return response


async def _next(queue: asyncio.Queue[WebJob], closing: asyncio.Future[Any]) -> WebJob | None:
    """The next changed job; None once the server stops or after a quiet while."""
    getter = asyncio.ensure_future(queue.get())
    waited: list[asyncio.Future[Any]] = [getter, closing]
    try:
        await asyncio.wait(waited, timeout=KEEPALIVE_SECONDS,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    return getter.result() if getter.done() and not getter.cancelled() else None


class OperatorLive:
    """The ``/operator/events`` stream: the live-queue fragment, pushed whenever it changes."""

    #: How often the queue is looked at; only a changed fragment is sent.
    LOOK_SECONDS = 1.0

    def __init__(self, rt: Runtime, env: jinja2.Environment) -> None:
        self.rt = rt
        self.env = env

    def routes(self) -> list[web.RouteDef]:
        """The stream's route."""
        return [web.get("/operator/events", self.events)]

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Stream the live queue until the page goes away, the session ends or the server stops."""
        rt = self.rt
        if not rt.operator(request):
            raise web.HTTPForbidden()
        if rt.closing.is_set():
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "1"})
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        t = partial(rt.t, rt.page_locale(request))
        shown, quiet = "", 0.0
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            while not rt.closing.is_set() and rt.operator(request):
                fragment = dash.live(self.env, t, rt.api.snapshot(), rt.running())
                if fragment != shown:
                    await response.write(frame("live", {"html": fragment}))
                    shown, quiet = fragment, 0.0
                elif quiet >= KEEPALIVE_SECONDS:
                    await response.write(b": keepalive\n\n")
                    quiet = 0.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(rt.closing.wait(), self.LOOK_SECONDS)
                quiet += self.LOOK_SECONDS
            await response.write(frame("bye", {}))
        except ConnectionResetError:
            pass  # the page went away
        return response
