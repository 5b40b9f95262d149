"""The operator view over HTTP: token login, session cookie, figures, grant / ban forms."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from adapters.web import charts
from bot.domain import Actor
from bot.errors import Refused, UpstreamBusy, UpstreamError
from bot.providers.base import ProviderRequest, ProviderResult
from bot.providers.demo import DemoProvider
from bot.reports import job_rows, last_days, overview
from bot.storage.base import LedgerEntry
from tests.test_web_harness import TOKEN, Factory, Running, Visitor, running_console, visitor


async def login(run: Running, token: str = TOKEN) -> tuple[Visitor, int, str]:
    """A browser that opened /operator and submitted ``token``."""
    v = Visitor(run.url)
    await v.open("/operator")
    status, body = await v.post("/operator/login", {"token": token, "csrf": v.csrf}, csrf="")
    return v, status, body if isinstance(body, str) else ""


class Moody(DemoProvider):
    """The demo provider, except that it refuses or fails when the prompt says so."""

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        """Draw, refuse or fail."""
        if "refuse" in request.prompt:
            raise Refused("not this one")
        if "fail" in request.prompt:
            raise UpstreamError("broken body")
        if "busy" in request.prompt:
            raise UpstreamBusy()
        return await super().generate(request)


async def test_operator_pages_need_a_session(settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, visitor(run) as v:
        page = await v.open("/operator")
        assert 'name="token"' in page and "<svg" not in page
        assert "IMAGINE_CONSOLE_TOKEN" in page and TOKEN not in page
        async with v.http.get(run.url + "/operator/live") as res:
            assert res.status == 403
        status, _ = await v.post("/operator/grant", {"user": f"web:{v.uid}", "credits": "50",
                                                     "csrf": v.csrf}, csrf="")
        assert status == 403
        status, _ = await v.post("/operator/ban", {"user": f"web:{v.uid}", "banned": "1",
                                                   "csrf": v.csrf}, csrf="")
        assert status == 403
        assert (await run.core.store.get_user(f"web:{v.uid}")).banned is False
        assert await run.ledger_kinds() == []


async def test_wrong_tokens_are_rejected_then_rate_limited(settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run:
        v, status, body = await login(run, "guess")
        try:
            assert status == 401 and "That token is not right." in body
            assert "ib_op" not in {c.key for c in v.http.cookie_jar}
            for _ in range(4):
                status, _ = await v.post("/operator/login", {"token": "nope", "csrf": v.csrf},
                                         csrf="")
                assert status == 401
            status, body = await v.post("/operator/login", {"token": "nope", "csrf": v.csrf},
                                        csrf="")
            assert status == 429 and "Too many failed attempts" in body
            status, _ = await v.post("/operator/login", {"token": TOKEN}, csrf="")
            assert status == 403  # no CSRF token: refused before the token is even looked at
            status, _ = await v.post("/operator/login", {"token": TOKEN, "csrf": v.csrf},
                                     csrf="")
            assert status == 303  # the right token is never refused (see test_web_hardening)
        finally:
            await v.close()


async def test_login_opens_a_strict_session_and_shows_the_figures(
        settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, visitor(run) as user:
        result = await user.imagine("a red fox", model="nano-banana-pro")
        v, status, _ = await login(run)
        try:
            assert status == 303
            cookie = next(c for c in v.http.cookie_jar if c.key == "ib_op")
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            page = await v.open("/operator")
            today = run.core.quotas.today()
            assert f'data-day="{today}" data-total="$0.13"' in page
            assert f'class="day today" data-day="{today}"' in page
            assert "$0.13" in page and "nano-banana-pro" in page and f"web:{user.uid}" in page
            turn = re.search(r'data-turn="([^"]+)"', result["html"])
            assert turn and f"/img/{turn.group(1)}/0/preview" in page
            async with v.http.get(f"{run.url}/img/{turn.group(1)}/0/preview") as thumb:
                assert thumb.status == 200  # operators see every user's results
            async with v.http.get(run.url + "/operator/live") as live:
                assert "0 waiting · 0 running" in (await live.json())["html"]
            assert TOKEN not in page
            status, _ = await v.post("/operator/logout", {"csrf": v.csrf}, csrf="")
            assert status == 303
            assert 'name="token"' in await v.open("/operator")
        finally:
            await v.close()


async def test_grant_ban_and_unban_from_the_page(settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, visitor(run) as user:
        v, _, _ = await login(run)
        try:
            await v.open("/operator")
            key = f"web:{user.uid}"
            status, _ = await v.post("/operator/grant", {"user": key, "credits": "50",
                                                         "csrf": v.csrf}, csrf="")
            assert status == 303
            assert f"Granted 50 credits to {key}; their bonus is now 50." in await v.open(
                "/operator")
            assert "150 credits" in await user.open("/")
            status, _ = await v.post("/operator/grant", {"user": key, "credits": "50"}, csrf="")
            assert status == 403
            for bad in ({"user": "bob", "credits": "5"}, {"user": key, "credits": "lots"},
                        {"user": key, "credits": "0"}):
                await v.post("/operator/grant", {**bad, "csrf": v.csrf}, csrf="")
                assert 'class="flash bad"' in await v.open("/operator")
            await v.post("/operator/ban", {"user": key, "banned": "1", "csrf": v.csrf}, csrf="")
            assert f"{key} is now blocked." in await v.open("/operator")
            blocked = await user.imagine("anything")
            assert "You have been blocked" in blocked["html"]
            await v.post("/operator/ban", {"user": key, "banned": "0", "csrf": v.csrf}, csrf="")
            assert (await user.imagine("anything"))["state"] == "done"
            grants = [e for e in await run.core.store.ledger() if e.kind == "grant"]
            assert [(g.actor_key, g.bonus, g.note) for g in grants] == [(key, 50,
                                                                         "by web:operator")]
        finally:
            await v.close()


async def test_refusal_and_error_rates_and_the_gallery(settings_factory: Factory) -> None:
    async with running_console(settings_factory, fakes={"demo": Moody()}) as run, \
            visitor(run) as user:
        for prompt in ("a calm lake", "please refuse", "make it fail", "a calm sea", "so busy"):
            await user.imagine(prompt)
        v, _, _ = await login(run)
        try:
            page = await v.open("/operator")
        finally:
            await v.close()
        assert ("5 finished: 2 delivered · 1 refused (20.0%) · 2 failed (40.0%) · 0 cancelled"
                in page)
        assert page.count('class="tile o-ok"') == 2
        assert 'class="tile o-refused"' in page and 'class="tile o-failed"' in page
        # sentences, not internal names; refunded jobs say so instead of a price
        assert "No image: the image service answered with an error." in page
        assert "No image: the image service was busy." in page
        assert "No image: the model refused the prompt." in page
        assert "UpstreamError" not in page and "UpstreamBusy" not in page
        tiles = re.findall(r'<figure class="tile o-(\w+)">(.*?)</figure>', page)
        for outcome, tile in tiles:
            assert ("refunded" in tile) == (outcome != "ok"), tile
            assert ("credits ·" in tile) == (outcome == "ok"), tile
        assert '<span class="k">Waiting</span><b class="v">0</b>' in page
        assert '<span class="k">Running</span><b class="v">0</b>' in page
        usage = await run.core.quotas.usage(Actor("web", user.uid))
        assert usage.credits_left == 92


def test_ledger_folds_into_days_models_platforms_and_users() -> None:
    ts = datetime(2026, 3, 10, 12, tzinfo=UTC)

    def job(rid: str, actor: str, day: str, model: str, usd: float, end: str,
            note: str = "") -> list[LedgerEntry]:
        rows = [LedgerEntry("reserve", actor, day, day[:7], credits=3, bonus=-1, usd=usd,
                            reservation_id=rid, model=model, size="1K", ts=ts)]
        if end:
            rows.append(LedgerEntry(end, actor, day, day[:7], reservation_id=rid, note=note,  # type: ignore[arg-type]
                                    ts=ts))
        return rows

    entries = [
        *job("a", "telegram:1", "2026-03-10", "nano-banana", 0.039, "settle"),
        *job("b", "discord:2", "2026-03-10", "nano-banana-pro", 0.134, "settle"),
        *job("c", "telegram:1", "2026-03-09", "nano-banana", 0.039, "settle"),
        *job("d", "telegram:1", "2026-03-10", "nano-banana", 0.039, "refund", "refused"),
        *job("e", "web:x", "2026-03-10", "nano-banana", 0.039, "refund", "JobTimeout"),
        *job("f", "web:x", "2026-03-10", "nano-banana", 0.039, "refund", "Cancelled"),
        *job("g", "web:x", "2026-03-10", "nano-banana", 0.039, ""),
        *job("h", "telegram:1", "2026-01-01", "nano-banana", 9.0, "settle"),  # outside 30 days
        LedgerEntry("grant", "web:x", "2026-03-10", "2026-03", bonus=50, ts=ts),
    ]
    rows = job_rows(entries)
    assert [r.outcome for r in rows] == ["ok", "ok", "ok", "refused", "failed", "cancelled",
                                         "running", "ok"]
    assert rows[0].credits == 4 and rows[0].platform == "telegram"
    ov = overview(rows, "2026-03-10")
    assert ov.days == last_days("2026-03-10") and len(ov.days) == 30 and ov.days[-1] == "2026-03-10"
    assert ov.series["usd_model"]["nano-banana"][-2:] == [0.039, 0.039]
    assert ov.series["usd_platform"]["discord"][-1] == 0.134
    assert ov.series["credits_platform"]["telegram"][-1] == 4
    assert [(t.name, t.images, t.credits) for t in ov.by_model] == [
        ("nano-banana-pro", 1, 4), ("nano-banana", 2, 8)]
    assert [t.name for t in ov.top_users] == ["discord:2", "telegram:1"]
    assert (ov.today_total.images, ov.today_total.credits, ov.today_users) == (2, 8, 2)
    assert ov.today_total.usd == round(0.039 + 0.134, 4)
    assert (ov.rates.finished, ov.rates.refused, ov.rates.failed, ov.rates.cancelled) == (
        6, 1, 1, 1)


def test_chart_axis_is_round_and_the_svg_marks_today() -> None:
    assert charts.axis(0.083) == (0.05, 2)
    assert charts.axis(8, integer=True) == (2.0, 4)
    assert charts.axis(0, integer=True) == (1.0, 1)
    assert charts.axis(0.0)[0] > 0
    days = last_days("2026-03-10")
    svg = charts.stacked_bars(days, {"a<b": [0.0] * 29 + [0.5], "c": [0.1] * 30},
                              today=days[-1], fmt=lambda v: f"${v:.2f}", label="spend & more",
                              chart_id="x", shape="narrow")
    assert svg.count('<g class="day') == 30 and 'class="day today" data-day="2026-03-10"' in svg
    assert "a&lt;b $0.50" in svg and 'aria-label="spend &amp; more"' in svg
    assert "<b" not in svg.replace("<g", "")


async def test_live_queue_tells_waiting_from_running(settings_factory: Factory) -> None:
    slow = {"providers": {"demo": {"api": "demo", "demo_delay_seconds": 1.5}},
            "limits": {"per_user_concurrency": 1, "per_user_queued": 1}}
    async with running_console(settings_factory, **slow) as run, visitor(run) as user:
        v, _, _ = await login(run)
        try:
            for prompt in ("first boat", "second boat"):
                status, _ = await user.submit(prompt)
                assert status == 202
            async with asyncio.timeout(10):
                while True:
                    async with v.http.get(run.url + "/operator/live") as live:
                        html = (await live.json())["html"]
                    if "1 waiting · 1 running" in html and "position" in html:
                        break
                    await asyncio.sleep(0.05)
            assert "In this console: Running" in html and "In this console: Waiting" in html
            assert re.search(r"first boat · \d+ s", html) and "second boat · position 1" in html
        finally:
            await v.close()


async def test_the_live_queue_is_pushed_to_the_operator(settings_factory: Factory) -> None:
    from tests.test_web_live import Stream

    slow = {"providers": {"demo": {"api": "demo", "demo_delay_seconds": 1.0}}}
    async with running_console(settings_factory, **slow) as run, visitor(run) as user:
        async with user.http.get(run.url + "/operator/events") as denied:
            assert denied.status == 403  # a visitor without the operator's session
        v, _, _ = await login(run)
        try:
            async with v.http.get(run.url + "/operator/events") as res:
                assert res.content_type == "text/event-stream"
                stream = Stream(res)
                assert "0 waiting · 0 running" in (await stream.until("live"))["html"]
                status, _ = await user.submit("a moth at the lamp")
                assert status == 202
                while "1 running" not in (html := (await stream.until("live"))["html"]):
                    pass
                assert "a moth at the lamp" in html and "In this console: Running" in html
                while "0 waiting · 0 running" not in (await stream.until("live"))["html"]:
                    pass
        finally:
            await v.close()
