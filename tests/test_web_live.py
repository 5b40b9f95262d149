"""Server push and resync over HTTP: the /api/events stream, a reloaded page's pending cards, a
restart between a job's start and its result, refusals answered before a job starts, and the
templates' autoescaping."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import jinja2
import jinja2.meta
from aiohttp import web

from adapters.web import WebConsole, pages
from bot.bootstrap import build_core
from bot.config import Settings
from tests.helpers import png
from tests.test_web_harness import Factory, Visitor, listening, running_console, visitor

SLOW = {"providers": {"demo": {"api": "demo", "demo_delay_seconds": 1.0}}}


class Stream:
    """A page's event stream, read event by event."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, seconds: float = 10.0) -> tuple[str, dict[str, Any]]:
        """The next event's name and data (comments and the retry field are skipped)."""
        name, data = "", ""
        async with asyncio.timeout(seconds):
            while True:
                line = (await self.response.content.readline()).decode()
                assert line, "the stream ended"
                line = line.rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif not line and name:
                    return name, json.loads(data)

    async def until(self, name: str, seconds: float = 10.0, **match: Any) -> dict[str, Any]:
        """Skip events up to the first called ``name`` whose data has ``match``'s values."""
        async with asyncio.timeout(seconds):
            while True:
                event, data = await self.next(seconds)
                if event == name and all(data.get(k) == v for k, v in match.items()):
                    return data


@asynccontextmanager
async def events(v: Visitor) -> AsyncIterator[Stream]:
    """Open the visitor's event stream."""
    async with v.http.get(v.base + "/api/events") as res:
        assert res.status == 200 and res.content_type == "text/event-stream"
        yield Stream(res)


async def test_jobs_are_pushed_from_queue_to_result(settings_factory: Factory) -> None:
    async with running_console(settings_factory, **SLOW) as run, visitor(run) as v, \
            events(v) as stream:
        first = await stream.until("sync")
        assert first["jobs"] == [] and first["turns"] == [] and "100 credits" in first["quota"]
        status, job = await v.submit("a paper boat on a puddle")
        assert status == 202
        states = []
        while True:
            data = await stream.until("job", job=job["job"])
            states.append(data["state"])
            if "html" in data:
                break
        assert states[-1] == "done" and "started" in states, states
        assert "a paper boat on a puddle" in data["html"] and 'data-left="96"' in data["quota"]
        running = next(s for s in states if s == "started")
        assert running == "started"


async def test_running_job_tells_generation_time_not_queue_time(settings_factory: Factory
                                                                ) -> None:
    async with running_console(settings_factory, **SLOW) as run, visitor(run) as v, \
            events(v) as stream:
        await stream.until("sync")
        await v.submit("a lantern")
        started = await stream.until("job", state="started")
        assert started["elapsed"] == 0 and started["text"] == "🎨 Generating… 0 s"
        assert started["tick"] == "🎨 Generating… {elapsed} s"


async def test_a_reloaded_page_shows_its_running_job_and_the_stream_finishes_it(
        settings_factory: Factory) -> None:
    async with running_console(settings_factory, **SLOW) as run, visitor(run) as v:
        status, job = await v.submit("a <b>bold</b> heron at dusk")
        assert status == 202
        page = await v.open("/")
        card = re.search(r'<article class="msg bot pending"[^>]*data-job="([^"]+)"', page)
        assert card and card.group(1) == job["job"], page
        assert "a &lt;b&gt;bold&lt;/b&gt; heron at dusk" in page and "<b>bold</b>" not in page
        assert 'id="welcome"' not in page
        async with events(v) as stream:
            sync = await stream.until("sync")
            assert [j["job"] for j in sync["jobs"]] == [job["job"]]
            if "html" not in sync["jobs"][0]:
                await stream.until("job", job=job["job"], state="done")
        other = Visitor(run.url)  # another browser sees none of it
        try:
            assert "data-job=" not in await other.open("/")
        finally:
            await other.close()


@asynccontextmanager
async def serve(settings: Settings, port: int = 0) -> AsyncIterator[tuple[WebConsole,
                                                                          asyncio.Event]]:
    """A core and console on ``port``; leaving stops the console the way ``run`` does."""
    core = build_core(settings)
    await core.start()
    try:
        async with listening(core, port) as running:
            yield running
    finally:
        await core.stop(grace=5)


async def test_a_result_that_lands_during_a_restart_reaches_the_page(settings_factory: Factory
                                                                     ) -> None:
    settings = settings_factory(**SLOW)
    async with serve(settings) as (console, stop):
        port = int(console.url.rpartition(":")[2])
        v = Visitor(console.url)
        await v.open("/")
        async with events(v) as stream:
            await stream.until("sync")
            status, job = await v.submit("a comet over the harbour")
            assert status == 202
            await stream.until("job", job=job["job"], state="started")
            stop.set()  # the server stops while the job runs; the job ends in the grace period
            assert await stream.until("bye") == {}
        async with v.http.get(v.base + "/api/events") as refused:
            assert refused.status in (503, 200)  # closing (503), or a page of the old server
    try:
        async with serve(settings, port) as (again, _):
            assert again.url == v.base
            async with events(v) as stream:
                sync = await stream.until("sync")
            assert sync["jobs"] == []  # this server never saw the job...
            assert len(sync["turns"]) == 1  # ...but its result is there, with the card
            assert "a comet over the harbour" in sync["turns"][0]["html"]
            assert 'data-left="96"' in sync["quota"]
            assert "restarted" in sync["interrupted"]
    finally:
        await v.close()


async def test_refusals_are_answered_before_the_job_so_nothing_is_lost(
        settings_factory: Factory) -> None:
    async with running_console(settings_factory, quota={"user_daily_credits": 10}) as run, \
            visitor(run) as v:
        many = [(f"r{i}.png", png(8, 8), "image/png") for i in range(15)]
        status, data = await v.submit("mix these", files=many, model="nano-banana-2-lite")
        assert status == 422, data
        assert data["error"] == ("nano-banana-2-lite takes at most 14 reference images; "
                                 "this request has 15.")
        status, data = await v.submit("a castle", model="nano-banana-pro", size="4K")
        assert status == 422 and data["error"].startswith("Not enough credits for this: it costs 24,")
        assert await run.ledger_kinds() == []  # nothing was reserved, nothing refunded
        assert run.console is not None and (await v.imagine("a castle"))["state"] == "done"


async def test_every_template_escapes_what_it_is_given() -> None:
    bundle = await asyncio.to_thread(pages.load_bundle)
    app = web.Application()
    env = pages.setup(app, bundle)
    hostile = "<script>alert(1)</script>"
    sources = {n: bundle.templates[n] for n in ("base.html", "playground.html", "operator.html",
                                                 "login.html", "error.html")}
    for name, source in sources.items():
        names = jinja2.meta.find_undeclared_variables(env.parse(source)) | {
            "lang", "title", "script", "body_class"}
        values: dict[str, Any] = dict.fromkeys(names, hostile)
        values.update(history=[hostile], examples=[hostile], languages={hostile: hostile},
                      styles=[(hostile, hostile)], pending=[{"id": hostile, "prompt": hostile, "tag": hostile,
                                "text": hostile}], demo=True)
        text = env.get_template(name).render(values)
        assert hostile not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text, name
    assert isinstance(env.undefined, type) and issubclass(env.undefined, jinja2.StrictUndefined)
    # the fragments are macros of the same environment: escaped the same way
    cards = env.get_template("cards.html").module
    board = env.get_template("dashboard.html").module
    fragments = [
        cards.described(title=hostile, note=hostile, prompts=[{"n": hostile, "text": hostile}]),
        cards.card(turn_id=hostile, alt=hostile, open_title=hostile,
                   shots=[{"turn": hostile, "index": 0, "w": 1, "h": 1, "n": hostile}],
                   caption=f"{hostile}\n{hostile}",
                   buttons=[{"kind": hostile, "action": hostile, "label": hostile,
                             "prompt": hostile, "confirm": hostile}]),
        cards.prompt_bubble(tag=hostile, prompt=hostile), cards.error_bubble(text=hostile),
        cards.quota_badge(left=hostile, exempt=False, short=hostile, details=hostile),
        board.kpis([dict.fromkeys(("label", "value", "sub", "css"), hostile)]),
        board.totals_table([hostile], [[hostile]], hostile),
        board.users_table([hostile], [{"name": hostile, "banned": True, "bonus": hostile,
                                       "images": hostile, "credits": hostile, "usd": hostile,
                                       "when": hostile}], hostile,
                          dict.fromkeys(("blocked", "grant_short", "ban", "unban"), hostile),
                          hostile),
        board.live(hostile, hostile, [dict.fromkeys(("owner", "running", "waiting"), hostile)],
                   [{"title": hostile, "jobs": [{"owner": hostile, "text": hostile}]}]),
        board.gallery([dict.fromkeys(("outcome", "turn_id", "w", "h", "icon", "prompt", "who",
                                      "cost", "when", "label"), hostile)], hostile),
    ]
    for fragment in fragments:
        assert hostile not in str(fragment) and "&lt;script&gt;" in str(fragment), fragment
