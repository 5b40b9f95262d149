"""The playground over HTTP: cookies, CSRF, jobs with progress, buttons, uploads, ownership."""

from __future__ import annotations

import asyncio
import re

import aiohttp
from yarl import URL

from bot.domain import MessageRef
from tests.helpers import png
from tests.test_web_harness import Factory, Visitor, running_console, turn_of, visitor


async def test_page_cookie_headers_and_demo_notice(settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(run.url + "/") as res:
            page = await res.text()
            assert res.status == 200
            cookie = res.cookies["ib_web"]
            assert cookie["httponly"] and cookie["samesite"] == "Lax"
            csp = res.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert res.headers["X-Content-Type-Options"] == "nosniff"
            assert res.headers["Cache-Control"] == "no-store"
        assert "Demo mode: no image API key is configured" in page
        assert '<span class="badge demo">DEMO</span>' in page
        assert "100 credits" in page and TOKEN_NOT_SHOWN not in page
        uid = cookie.value.rpartition(".")[0]
        async with http.get(run.url + "/") as again:
            assert "ib_web" not in again.cookies  # kept, not re-issued
            assert f"web:{uid}" in await again.text()
        http.cookie_jar.update_cookies({"ib_web": f"{uid}x.{cookie.value.rpartition('.')[2]}"},
                                       URL(run.url))
        async with http.get(run.url + "/") as forged:
            assert forged.cookies["ib_web"].value.rpartition(".")[0] != uid + "x"
        async with http.get(run.url + "/static/playground.js") as js:
            assert js.status == 200 and js.content_type == "text/javascript"
        async with http.get(run.url + "/static/../bot/config.py") as sneaky:
            assert sneaky.status == 404


TOKEN_NOT_SHOWN = "operator-test-token"


async def test_imagine_runs_in_background_settles_and_serves_the_image(
        settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, visitor(run) as v:
        status, started = await v.submit("a red fox in the snow", model="nano-banana-pro",
                                         size="2K", aspect="16:9")
        assert status == 202 and started["state"] in ("waiting", "queued", "started", "finished")
        result = await v.wait(started["job"])
        assert result["state"] == "done"
        html = result["html"]
        assert "a red fox in the snow" in html and "nano-banana-pro · 2K · 16:9" in html
        assert "DEMO placeholder" in html
        for label in ("🔄 Reroll", "⬆ 4K (24)", "🎲 Variations", "✏️ Edit", "🗑 Delete"):
            assert label in html
        assert 'data-left="86"' in result["quota"] and "86 credits" in result["quota"]
        turn = turn_of(result)
        assert await run.ledger_kinds() == ["reserve", "settle"]
        bound = await run.core.service.turn_for(MessageRef("web", v.uid, turn))
        assert bound is not None and bound.actor_key == f"web:{v.uid}"
        async with v.http.get(f"{run.url}/img/{turn}/0/preview") as preview:
            assert preview.status == 200 and preview.content_type == "image/jpeg"
            assert "private" in preview.headers["Cache-Control"]
        async with v.http.get(f"{run.url}/img/{turn}/0") as original:
            assert original.status == 200 and original.content_type == "image/png"
            assert len(await original.read()) > 10_000
        async with v.http.get(f"{run.url}/img/{turn}/1") as missing:
            assert missing.status == 404
        page = await v.open("/")  # the conversation is there after a reload, with its buttons
        assert f'id="turn-{turn}"' in page and "⬆ 4K (24)" in page


async def test_post_without_a_valid_csrf_token_is_refused(settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, visitor(run) as v:
        form = {"prompt": "x"}
        status, body = await v.post("/api/jobs", form, csrf="")
        assert status == 403 and "expired or did not come from this page" in body["error"]
        status, _ = await v.post("/api/jobs", form, csrf=v.csrf[:-2] + "AA")
        assert status == 403
        status, _ = await v.post("/api/jobs", form, headers={"Origin": "http://evil.example"})
        assert status == 403
        status, _ = await v.post("/api/jobs", form, headers={"Sec-Fetch-Site": "cross-site"})
        assert status == 403
        async with _fresh(run.url) as other:
            await other.open("/")
            status, _ = await other.post("/api/jobs", form, csrf=v.csrf)  # someone else's token
            assert status == 403
        assert await run.ledger_kinds() == []


class _fresh:
    """A second browser, as an async context manager."""

    def __init__(self, base: str) -> None:
        self.v = Visitor(base)

    async def __aenter__(self) -> Visitor:
        return self.v

    async def __aexit__(self, *exc: object) -> None:
        await self.v.close()


async def test_a_bad_file_gets_a_translated_error_and_nothing_is_charged(
        settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run:
        async with visitor(run) as v:
            result = await v.imagine("use this", files=[("notes.png", b"just text", "image/png")])
            assert result["state"] == "failed"
            assert "That is not an image I can use" in result["html"]
            assert 'role="alert"' in result["html"] and "100 credits" in result["quota"]
        async with visitor(run, "zh-CN,zh;q=0.9") as zh:
            result = await zh.imagine("用这个", files=[("x.jpg", b"\x00" * 50, "image/jpeg")])
            assert "图" in result["html"] and "That is not" not in result["html"]
        assert await run.ledger_kinds() == []


async def test_an_oversized_upload_is_refused_at_once(settings_factory: Factory) -> None:
    async with running_console(settings_factory, limits={"max_input_mb": 0.1}) as run, \
            visitor(run) as v:
        status, body = await v.submit("big", files=[("big.png", b"\x89PNG" + b"0" * 300_000,
                                                     "image/png")])
        assert status == 413
        assert body["error"] == "That file is 0.3 MB; the limit is 0.1 MB."
        assert await run.ledger_kinds() == []


async def test_references_and_edit_continue_the_conversation(settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, visitor(run) as v:
        first = await v.imagine("a cat", model="nano-banana-pro",
                                files=[("ref.png", png(), "image/png")])
        parent = turn_of(first)
        turn = await run.core.conversations.get(parent)
        assert turn is not None and len(turn.input_hashes) == 1
        edited = await v.imagine("make it night", parent=parent, model="", size="", aspect="")
        child = await run.core.conversations.get(turn_of(edited))
        assert child is not None
        assert (child.parent_id, child.kind, child.model, child.size) == (
            parent, "edit", "nano-banana-pro", "1K")
        assert 'data-left="72"' in edited["quota"]
        page = await v.open("/")
        assert "✏️ Edit</span><p>make it night" in page.replace("\n", "")


async def test_buttons_reroll_upscale_variations_and_delete(settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, visitor(run) as v:
        turn = turn_of(await v.imagine("a lighthouse", model="nano-banana-pro"))
        results = {}
        for action in (f"ib:reroll:{turn}", f"ib:upscale:{turn}:4K", f"ib:variations:{turn}"):
            status, job = await v.act(action)
            assert status == 202, job
            results[action.split(":")[1]] = await v.wait(job["job"])
        made = {k: await run.core.conversations.get(turn_of(r)) for k, r in results.items()}
        assert made["reroll"] is not None and made["reroll"].kind == "reroll"
        assert made["upscale"] is not None and made["upscale"].size == "4K"
        varied = made["variations"]  # a new image from the chosen one, not its continuation
        assert varied is not None and varied.parent_id is None and varied.kind == "variation"
        status, body = await v.act(f"ib:delete:{turn}")
        assert status == 200 and body == {"deleted": turn, "text": "Deleted."}
        assert await run.core.conversations.get(turn) is None
        async with v.http.get(f"{run.url}/img/{turn}/0") as gone:
            assert gone.status == 404
        status, body = await v.act("ib:nonsense")
        assert status == 400


async def test_other_visitors_cannot_see_or_press_my_results(settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, visitor(run) as mine:
        status, started = await mine.submit("private picture")
        result = await mine.wait(started["job"])
        turn = turn_of(result)
        async with visitor(run) as other:
            async with other.http.get(f"{run.url}/img/{turn}/0/preview") as res:
                assert res.status == 404
            status, body = await other.act(f"ib:reroll:{turn}")
            assert status == 403 and "Only the requester" in body["error"]
            status, body = await other.act(f"ib:delete:{turn}")
            assert status == 403
            assert (await other.status(started["job"]))[0] == 404
            assert "private picture" not in await other.open("/")
        assert await run.core.conversations.get(turn) is not None


async def test_queue_position_and_elapsed_time_are_reported(settings_factory: Factory) -> None:
    async with running_console(
            settings_factory, limits={"global_concurrency": 1},
            providers={"demo": {"api": "demo", "demo_delay_seconds": 0.6}}) as run, \
            visitor(run) as first, visitor(run) as second:
        _, a = await first.submit("first")
        await asyncio.sleep(0.1)
        _, b = await second.submit("second")
        seen: set[str] = set()
        async with asyncio.timeout(10):
            while True:
                _, state = await second.status(b["job"])
                if "html" in state:
                    break
                seen.add(state["text"])
                await asyncio.sleep(0.03)
        assert "⏳ Queued, position 1…" in seen
        assert any(re.fullmatch(r"🎨 Generating… \d+ s", text) for text in seen)
        assert (await first.wait(a["job"]))["state"] == "done"


async def test_one_browser_cannot_pile_up_jobs(settings_factory: Factory) -> None:
    async with running_console(
            settings_factory, limits={"per_user_queued": 0},
            providers={"demo": {"api": "demo", "demo_delay_seconds": 0.5}}) as run, \
            visitor(run) as v:
        status, first = await v.submit("one")
        assert status == 202
        status, body = await v.submit("two")
        assert status == 429 and "request(s) waiting" in body["error"]
        assert (await v.wait(first["job"]))["state"] == "done"
        assert await run.ledger_kinds() == ["reserve", "settle"]


async def test_language_choice_is_saved_like_settings(settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, visitor(run) as v:
        status, _ = await v.post("/api/locale", {"locale": "zh-Hant"})
        assert status == 200
        page = await v.open("/")
        assert '<html lang="zh-Hant">' in page and "想畫點什麼？" in page
        status, _ = await v.post("/api/locale", {"locale": "xx"})
        assert status == 400
        result = await v.imagine("")
        assert result["state"] == "failed" and "/imagine" in result["html"]
