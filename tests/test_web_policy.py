"""The operator's policy page (issue 17): route health, the last failovers, group settings."""

from __future__ import annotations

import html

from bot.domain import Actor, ChatRef
from bot.errors import UpstreamNoCredit
from bot.providers.base import ProviderRequest, ProviderResult
from bot.providers.demo import DemoProvider
from tests.test_web_harness import Factory, running_console, visitor
from tests.test_web_operator import login

GUILD = ChatRef("discord", "500", "group", group_id="77")


class Broke(DemoProvider):
    """A route that is out of credit."""

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        raise UpstreamNoCredit("HTTP 402: insufficient balance")


async def test_policy_page_shows_routes_failovers_and_groups(settings_factory: Factory) -> None:
    sections = {"providers": {"broke": {"api": "demo"}, "spare": {"api": "demo"}},
                "models": {"nano-banana-2.1": {"routes": ["broke", "spare"]}}}
    fakes = {"broke": Broke(name="broke"), "spare": DemoProvider(name="spare")}
    async with running_console(settings_factory, fakes=fakes, **sections) as run:
        async with visitor(run) as anon, anon.http.get(run.url + "/operator/policy.json") as res:
            assert res.status == 403  # the operator's session only
        service = run.core.service
        await service.groups.configure(Actor("discord", "1"), GUILD, ["models", "nano-banana-2.1"],
                                       group_admin=True)
        async with visitor(run) as v:
            reply = await v.imagine("a lantern")
            assert reply.get("error") is None, reply
        v, status, _ = await login(run)
        try:
            assert 'href="/operator/policy"' in await v.open("/operator")
            page = html.unescape(await v.open("/operator/policy"))
            assert "broke" in page and "open (skipped)" in page
            assert "nano-banana-2.1: broke → spare (out of credit)" in page
            assert "discord:77" in page and "models: nano-banana-2.1" in page
            # The operator changes a group's setting from the page.
            status, body = await v.post("/operator/policy", {
                "group": "discord:77", "setting": "member-daily", "value": "20", "csrf": v.csrf})
            assert status == 200 and "member-daily: 20" in html.unescape(body)
            assert (await service.groups.get(GUILD)).member_daily == 20
            status, body = await v.post("/operator/policy", {
                "group": "nowhere", "setting": "models", "value": "x", "csrf": v.csrf})
            assert "discord:SERVER_ID" in html.unescape(body)
            async with v.http.get(run.url + "/operator/policy.json") as res:
                data = await res.json()
            assert [r["state"] for r in data["routes"]] == ["open", "closed"]
            assert data["failovers"][0]["to"] == "spare"
            assert data["groups"][0]["settings"]["member_daily"] == 20
        finally:
            await v.close()
