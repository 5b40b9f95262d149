"""Issue 16 on the web playground: a batch as a grid (one picture per candidate, each bound to its
own turn) with U/V per candidate and Reroll, flags typed in the prompt, the n and style menus,
/describe on an upload with runnable prompts, and /history's list."""

from __future__ import annotations

import re

import aiohttp

from bot.domain import MessageRef
from tests.helpers import photo
from tests.test_telegram_batches import candidates
from tests.test_telegram_history import Describing
from tests.test_web_harness import Factory, running_console, visitor


async def test_a_batch_is_a_grid_with_u_and_v_per_candidate(settings_factory: Factory) -> None:
    provider = candidates(fail_at=1)
    async with running_console(settings_factory, fakes={"demo": provider}) as running, \
            visitor(running) as v:
        page = await v.open("/")
        assert 'id="n"' in page and 'id="style"' in page and "Watercolor" in page
        result = await v.imagine("three cranes --size 2K", n="3", style="pixel")
        html = result["html"]
        shots = re.findall(r'href="/img/([0-9a-f]+)/0"', html)
        assert len(shots) == 2 and len(set(shots)) == 2  # two of three made: one per candidate
        assert [n for n in re.findall(r'<span class="n">(\d)</span>', html)] == ["1", "2"]
        assert "Batch: 2 of 3. 1 failed and cost nothing." in html
        labels = re.findall(r'data-kind="[a-z]+" data-action="[^"]+">([^<]+)</button>', html)
        assert [label.split(" ")[0] for label in labels] == ["U1", "U2", "V1", "V2", "🔄"]
        assert provider.requests[-1].prompt.startswith("Pixel art of three cranes")
        assert provider.requests[-1].size == "2K"  # the flag won over the composer's size
        core = running.core
        for turn in shots:  # each candidate is bound (and paid) as its own message
            bound = await core.service.turn_for(MessageRef("web", v.uid, turn))
            assert bound is not None and bound.id == turn
        assert [e.kind for e in await core.store.ledger(f"web:{v.uid}")] == [
            "reserve", "reserve", "reserve", "refund", "settle", "settle"]
        u2 = re.search(r'data-action="(ib:upscale:' + shots[1] + r'[^"]*)"', html)
        assert u2 is not None
        status, started = await v.act(u2.group(1))
        assert status == 202, started
        bigger = await v.wait(started["job"])
        assert "· 4K ·" in bigger["html"] and provider.requests[-1].references


async def test_describe_an_upload_and_the_history_list(settings_factory: Factory) -> None:
    provider = Describing()
    async with running_console(settings_factory, fakes={"demo": provider}) as running, \
            visitor(running) as v:
        form = aiohttp.FormData()
        form.add_field("files", photo(), filename="fox.png", content_type="image/png")
        status, answer = await v.post("/api/describe", form)
        assert status == 200, answer
        assert len(answer["prompts"]) == 3 and 'data-use="A red fox curled up' in answer["html"]
        status, refused = await v.post("/api/describe", aiohttp.FormData({"x": "1"}))
        assert status == 400 and "Send /describe" in str(refused)
        made = await v.imagine(answer["prompts"][0])
        assert "A red fox curled up" in made["html"]
        page = await v.open("/")
        assert page.count('class="msg bot result"') == 1
        assert [e.kind for e in await running.core.store.ledger(f"web:{v.uid}")] == [
            "reserve", "settle", "reserve", "settle"]
