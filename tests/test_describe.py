"""Issue 16.4: /describe — the route's text mode, its own small price, refunds, and the prompts'
buttons (stored, owner-only), on the demo route and on Gemini's and a relay's wire."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.config import Settings
from bot.describe import parse_prompts
from bot.domain import ImageData
from bot.errors import NotFound, NotOwner, UpstreamBusy
from bot.providers.gemini import GeminiProvider
from bot.providers.openai_chat import OpenAIChatProvider
from bot.providers.retry import RetryPolicy
from bot.providers.routes import ROUTES
from bot.providers.text import TextRequest
from tests.fake_upstream import (
    DESCRIBED,
    FakeUpstream,
    Reply,
    chat_body,
    fake_upstream_fixture,  # noqa: F401
    gemini_body,
)
from tests.helpers import png
from tests.test_service import ALICE, BOB, CHAT, FakeProvider, kinds, running

Factory = Callable[..., Settings]
IMAGE = ImageData(png(64, 48), "image/png", 64, 48)


class Texting(FakeProvider):
    """A provider with a text mode that answers ``answer`` (or raises it)."""

    def __init__(self, answer: str | BaseException) -> None:
        super().__init__()
        self.answer = answer
        self.texts: list[TextRequest] = []

    async def text(self, request: TextRequest) -> str:
        self.texts.append(request)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def test_prompts_are_read_from_numbered_bulleted_or_quoted_lines() -> None:
    answer = ("Here are four prompts:\n1. **A fox in snow, soft light**\n2) \"A fox at dusk, "
              "oil painting\"\n- a fox, pixel art, 16-bit\n\n* A fox in snow, soft light\n"
              "Prompt 4: A paper-cut fox, layered, warm colors\n5. one more fox picture")
    assert parse_prompts(answer) == ["A fox in snow, soft light", "A fox at dusk, oil painting",
                                     "a fox, pixel art, 16-bit",
                                     "A paper-cut fox, layered, warm colors"]


async def test_describe_charges_its_own_price_and_keeps_the_prompts(
        settings_factory: Factory) -> None:
    provider = Texting(DESCRIBED)
    settings = settings_factory(describe={"credits": 2, "model": "gemini-3.8-flash"})
    async with running(settings, providers={"demo": provider}) as core:
        described = await core.api.describe(ALICE, CHAT, IMAGE)
        assert len(described.prompts) == 3 and described.credits_used == 2
        assert described.text.splitlines()[1] == "1. " + described.prompts[0]
        assert "Credits charged: 2." in described.text
        [sent] = provider.texts
        assert sent.model_id == "gemini-3.8-flash" and "prompts" in sent.instruction
        assert sent.image.mime in ("image/png", "image/jpeg")  # cleaned like any reference
        assert await kinds(core) == ["reserve", "settle"]
        assert (await core.service.usage(ALICE)).credits_left == 98
        assert await core.api.suggestion(ALICE, described.id, 2) == described.prompts[1]
        with pytest.raises(NotOwner):
            await core.api.suggestion(BOB, described.id, 1)
        with pytest.raises(NotFound):
            await core.api.suggestion(ALICE, described.id, 9)
        assert await core.api.forget(ALICE) == 0
        with pytest.raises(NotFound):  # /forget erases the suggestions too
            await core.api.suggestion(ALICE, described.id, 1)


@pytest.mark.parametrize("answer", [UpstreamBusy(5), "Sorry, I can't see anything."])
async def test_a_failed_describe_costs_nothing(settings_factory: Factory,
                                               answer: str | BaseException) -> None:
    async with running(settings_factory(), providers={"demo": Texting(answer)}) as core:
        with pytest.raises((UpstreamBusy, Exception)):
            await core.api.describe(ALICE, CHAT, IMAGE)
        assert await kinds(core) == ["reserve", "refund"]
        assert (await core.service.usage(ALICE)).credits_left == 100


async def test_the_demo_route_describes_offline(settings_factory: Factory) -> None:
    async with running(settings_factory()) as core:
        described = await core.api.describe(ALICE, CHAT, IMAGE)
        assert 2 <= len(described.prompts) <= 4 and "wide" in described.prompts[0]


async def test_gemini_text_mode_on_the_wire(fake_upstream: FakeUpstream) -> None:
    provider = GeminiProvider(name="google", api_key="AIzaSy-TESTKEY", base_url=fake_upstream.url,
                              policy=RetryPolicy(max_retries=0))
    try:
        text = await provider.text(TextRequest("gemini-3.8-flash", "Describe it.", IMAGE))
        assert text == DESCRIBED
        [seen] = fake_upstream.seen("gemini")
        assert seen.path == "/v1beta/models/gemini-3.8-flash:generateContent"
        assert seen.json["generationConfig"] == {"responseModalities": ["TEXT"]}
        parts = seen.json["contents"][0]["parts"]
        assert parts[0] == {"text": "Describe it."} and parts[1]["inline_data"]["mime_type"] == (
            "image/png")
        fake_upstream.push("gemini", Reply(json=gemini_body(
            [{"text": "thinking...", "thought": True}, {"text": "1. A fox at dawn"}])))
        assert await provider.text(TextRequest("gemini-3.8-flash", "x", IMAGE)) == (
            "1. A fox at dawn")
    finally:
        await provider.aclose()


async def test_relay_text_mode_spells_the_model_its_way(fake_upstream: FakeUpstream) -> None:
    provider = OpenAIChatProvider(name="or", base_url=fake_upstream.v1, api_key="sk-test",
                                  route=ROUTES["openrouter"], policy=RetryPolicy(max_retries=0))
    try:
        fake_upstream.push("chat", Reply(json=chat_body("1. A fox\n2. Another fox here")))
        text = await provider.text(TextRequest("gemini-3.8-flash", "Describe it.", IMAGE))
        assert text == "1. A fox\n2. Another fox here"
        [seen] = fake_upstream.seen("chat")
        assert seen.json["model"] == "google/gemini-3.8-flash"
        content = seen.json["messages"][0]["content"]
        assert content[0] == {"type": "text", "text": "Describe it."}
        assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    finally:
        await provider.aclose()
