"""Each route's request shape and error dialect, through the real openai SDK and httpx.

Every expected shape names the page it comes from (bot/providers/routes.py lists them too).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.config import ProviderSection, load_settings
from bot.errors import ModelUnavailable, Refused, UpstreamBusy
from bot.providers.base import HistoryTurn, ImageProvider, ProviderRequest
from bot.providers.factory import build_provider
from tests.fake_upstream import (
    FakeUpstream,
    Reply,
    Sleeps,
    b64,
    chat_body,
    data_url,
    fake_upstream_fixture,  # noqa: F401
    gemini_body,
    openai_error,
    png,
    sleeps_fixture,  # noqa: F401
)
from tests.outcomes import jobs

KEY = "sk-route-TESTKEY-0123456789"
RED, GREEN, BLUE = png(color="red"), png(color="green"), png(color="blue")
Make = Callable[..., ImageProvider]


@pytest.fixture
async def make(fake_upstream: FakeUpstream, sleeps: Sleeps) -> AsyncIterator[Make]:
    """Build a provider of one route pointed at the fake (as the factory builds it)."""
    made: list[ImageProvider] = []

    def build(api: str, **section: Any) -> ImageProvider:
        base = fake_upstream.url if api == "gemini" else fake_upstream.v1
        provider = build_provider(api, ProviderSection.model_validate(
            {"api": api, "base_url": base, **section}), api_key=KEY, sleep=sleeps)
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


def catalog_id(api: str, model: str = "nano-banana-2.1") -> str:
    """The id the catalog sends for ``model`` on a provider of route ``api``."""
    settings = load_settings(None, {"IMAGINE__PROVIDERS__P__API": api,
                                    "IMAGINE__PROVIDERS__P__BASE_URL": '"http://relay/v1"'})
    return settings.catalog()[model].id


def test_model_ids_are_spelled_per_route() -> None:
    """OpenRouter: ``google/<id>`` (openrouter.ai/docs, image generation); others: Google's id."""
    assert catalog_id("openrouter") == "google/gemini-nano-banana-2.1"
    assert catalog_id("openrouter", "nano-banana-2-lite") == "google/gemini-3.1-flash-lite-image"
    for api in ("gemini", "new-api", "litellm", "openai-chat"):
        assert catalog_id(api) == "gemini-nano-banana-2.1"


def test_a_model_may_name_its_id_per_route() -> None:
    settings = load_settings(None, {
        "IMAGINE__PROVIDERS__P__API": "litellm",
        "IMAGINE__MODELS__NANO-BANANA-PRO__IDS": '{litellm = "gemini/gemini-3-pro-image"}'})
    assert settings.catalog()["nano-banana-pro"].id == "gemini/gemini-3-pro-image"


async def test_openrouter_request(make: Make, fake_upstream: FakeUpstream) -> None:
    """https://openrouter.ai/docs/guides/overview/multimodal/image-generation: top-level
    ``modalities`` and ``image_config {aspect_ratio, image_size}``, smallest size ``0.5K``;
    ``reasoning.effort`` and the ``web`` plugin; Bearer auth."""
    await make("openrouter").generate(ProviderRequest(
        model_id="gemini-nano-banana-2.1", prompt="a fox", size="512", aspect="8:1",
        thinking="high", search=True))
    (seen,) = fake_upstream.seen("chat")
    body = seen.json
    assert body["model"] == "google/gemini-nano-banana-2.1"
    assert body["modalities"] == ["image", "text"]
    assert body["image_config"] == {"aspect_ratio": "8:1", "image_size": "0.5K"}
    assert body["reasoning"] == {"effort": "high"} and body["plugins"] == [{"id": "web"}]
    assert "extra_body" not in body and "google" not in body
    assert seen.headers["Authorization"] == f"Bearer {KEY}"


async def test_new_api_reads_a_literal_extra_body_key(make: Make,
                                                      fake_upstream: FakeUpstream) -> None:
    """https://ai.google.dev/gemini-api/docs/openai#extra-body: options under a JSON key named
    ``extra_body`` -> ``google``; the openai SDK's own extra_body= would flatten them."""
    await make("new-api").generate(ProviderRequest(
        model_id="gemini-nano-banana-2.1", prompt="a fox", size="2K", aspect="16:9",
        thinking="minimal"))
    body = fake_upstream.seen("chat")[0].json
    assert body["model"] == "gemini-nano-banana-2.1"
    assert body["extra_body"] == {"google": {
        "image_config": {"aspect_ratio": "16:9", "image_size": "2K"},
        "thinking_config": {"thinking_level": "minimal"}}}
    assert "image_config" not in body and "reasoning" not in body


async def test_litellm_request(make: Make, fake_upstream: FakeUpstream) -> None:
    """https://docs.litellm.ai/docs/providers/gemini: ``reasoning_effort``, ``googleSearch``."""
    await make("litellm").generate(ProviderRequest(
        model_id="gemini-3-pro-image", prompt="a fox", size="4K", aspect="1:1", search=True,
        thinking="low"))
    body = fake_upstream.seen("chat")[0].json
    assert body["image_config"] == {"aspect_ratio": "1:1", "image_size": "4K"}
    assert body["reasoning_effort"] == "low" and body["tools"] == [{"googleSearch": {}}]


async def test_generic_relay_gets_every_spelling(make: Make, fake_upstream: FakeUpstream) -> None:
    await make("openai-chat").generate(ProviderRequest(
        model_id="gemini-3-pro-image", prompt="a fox", size="2K", aspect="3:2"))
    body = fake_upstream.seen("chat")[0].json
    config = {"aspect_ratio": "3:2", "image_size": "2K"}
    assert body["image_config"] == config
    assert body["extra_body"] == {"google": {"image_config": config}}
    assert body["google"] == {"image_config": config}


async def test_native_request_with_thinking_and_search(make: Make,
                                                       fake_upstream: FakeUpstream) -> None:
    """https://ai.google.dev/gemini-api/docs/image-generation: ``imageSize`` "512" has no K;
    ``thinkingConfig.thinkingLevel``; ``tools: [{google_search: {}}]`` (docs/google-search)."""
    await make("gemini").generate(ProviderRequest(
        model_id="gemini-nano-banana-2.1", prompt="today's weather in Paris", size="1K",
        aspect="1:4", thinking="medium", search=True))
    seen = fake_upstream.seen("gemini")[0]
    assert seen.path == "/v1beta/models/gemini-nano-banana-2.1:generateContent"
    assert seen.json["generationConfig"]["imageConfig"] == {"aspectRatio": "1:4",
                                                           "imageSize": "1K"}
    assert seen.json["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "medium"}
    assert seen.json["tools"] == [{"google_search": {}}]


# ----- error dialects -------------------------------------------------------------------------


async def test_a_shut_down_id_is_a_config_error_without_retries(
        make: Make, fake_upstream: FakeUpstream, sleeps: Sleeps) -> None:
    """Google answers 404 NOT_FOUND for a shut-down id (the fake does the same)."""
    with pytest.raises(ModelUnavailable) as info:
        await make("gemini").generate(ProviderRequest(model_id="gemini-3.1-flash-image",
                                                      prompt="x"))
    assert info.value.params["model"] == "gemini-3.1-flash-image"
    assert len(fake_upstream.seen("gemini")) == 1 and sleeps == []


async def test_new_api_no_available_channel_is_not_busy(make: Make, fake_upstream: FakeUpstream,
                                                        sleeps: Sleeps) -> None:
    """new-api answers 503 "no available channel for model X" when no channel serves it."""
    fake_upstream.push("chat", openai_error(
        503, "No available channel for model gemini-nano-banana-2.1 under group default "
        "(distributor)", "new_api_error", "model_not_found"))
    with pytest.raises(ModelUnavailable):
        await make("new-api").generate(ProviderRequest(model_id="gemini-nano-banana-2.1",
                                                       prompt="x"))
    assert len(fake_upstream.seen("chat")) == 1 and sleeps == []


async def test_openrouter_error_inside_a_200_is_retried_when_5xx(
        make: Make, fake_upstream: FakeUpstream, sleeps: Sleeps) -> None:
    """https://openrouter.ai/docs/api-reference/errors: ``choices[0].error`` with
    ``finish_reason: "error"`` in a 200; 429/5xx codes are worth a retry."""
    body = chat_body("", finish="error")
    body["choices"][0]["error"] = {"code": 502, "message": "Provider returned error"}
    fake_upstream.push("chat", Reply(json=body))
    result = await make("openrouter").generate(ProviderRequest(model_id="x", prompt="x"))
    assert result.images and len(sleeps) == 1
    body = chat_body("", finish="error")
    body["choices"][0]["error"] = {"code": 429, "message": "rate limited"}
    fake_upstream.push("chat", *[Reply(json=body)] * 4)
    with pytest.raises(UpstreamBusy):
        await make("openrouter").generate(ProviderRequest(model_id="x", prompt="x"))


async def test_openrouter_moderation_403_is_a_refusal(make: Make,
                                                      fake_upstream: FakeUpstream) -> None:
    """OpenRouter's moderation: 403 with ``metadata.reasons`` and ``flagged_input``."""
    fake_upstream.push("chat", Reply(status=403, json={"error": {
        "code": 403, "message": "Input was flagged",
        "metadata": {"reasons": ["violence"], "flagged_input": "...", "provider_name": "x"}}}))
    with pytest.raises(Refused):
        await make("openrouter").generate(ProviderRequest(model_id="x", prompt="x"))


# ----- answer shapes --------------------------------------------------------------------------


@pytest.mark.parametrize("message", [
    {"role": "assistant", "content": None, "image": {"url": data_url(RED)}},  # older LiteLLM
    {"role": "assistant", "content": [{"type": "image", "image": data_url(RED)}]},  # relays
])
async def test_relay_shapes(make: Make, fake_upstream: FakeUpstream,
                            message: dict[str, Any]) -> None:
    body = chat_body("")
    body["choices"][0]["message"] = message
    fake_upstream.push("chat", Reply(json=body))
    result = await make("litellm").generate(ProviderRequest(model_id="x", prompt="x"))
    assert result.images[0].data == RED


async def test_several_final_native_images_are_all_kept(make: Make,
                                                        fake_upstream: FakeUpstream) -> None:
    fake_upstream.push("gemini", Reply(json=gemini_body([
        {"inlineData": {"mimeType": "image/png", "data": b64(BLUE)}, "thought": True},
        {"text": "Here are two panels"},
        {"inlineData": {"mimeType": "image/png", "data": b64(RED)}, "thoughtSignature": "s1"},
        {"inlineData": {"mimeType": "image/png", "data": b64(GREEN)}, "thoughtSignature": "s2"},
    ])))
    provider = make("gemini")
    result = await provider.generate(ProviderRequest(model_id="gemini-3-pro-image", prompt="x"))
    assert [i.data for i in result.images] == [RED, GREEN]
    # Replaying that turn puts both images back in place, signatures as Google sent them.
    turn = HistoryTurn("x", (), result.images, result.provider_state)
    await provider.generate(ProviderRequest(model_id="gemini-3-pro-image", prompt="y",
                                            history=(turn,)))
    parts = fake_upstream.seen("gemini")[1].json["contents"][1]["parts"]
    assert parts[2]["inlineData"]["data"] == b64(RED) and parts[2]["thoughtSignature"] == "s1"
    assert parts[3]["inlineData"]["data"] == b64(GREEN) and parts[3]["thoughtSignature"] == "s2"


async def test_relay_turn_replayed_to_native_gemini_3_is_signed(
        make: Make, fake_upstream: FakeUpstream) -> None:
    """A first turn from a relay (no signatures) edited on native Gemini 3: every model part
    carries Google's placeholder (ai.google.dev/gemini-api/docs/thought-signatures, FAQ)."""
    relay = await make("openrouter").generate(ProviderRequest(model_id="x", prompt="a cat"))
    turn = HistoryTurn("a cat", (), relay.images, relay.provider_state)
    await make("gemini").generate(ProviderRequest(model_id="gemini-nano-banana-2.1",
                                                  prompt="make it night", history=(turn,)))
    model_turn = fake_upstream.seen("gemini")[0].json["contents"][1]
    assert model_turn["role"] == "model"
    assert model_turn["parts"] and all(
        p.get("thoughtSignature") == "skip_thought_signature_validator"
        for p in model_turn["parts"])
    assert json.dumps(model_turn).count("inline_data") == 1


async def test_retries_are_counted_in_metrics(tmp_path: Any, fake_upstream: FakeUpstream,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``imagine_upstream_retries_total`` counts each retry the policy makes (it never moved)."""
    from bot.bootstrap import build_core
    from bot.domain import Actor, ChatRef, ImageRequest

    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    settings = load_settings(None, {
        "GEMINI_API_KEY": KEY, "IMAGINE__PROVIDERS__GEMINI__BASE_URL": f'"{fake_upstream.url}"',
        "IMAGINE__PROVIDERS__GEMINI__RETRY_CAP_SECONDS": "0",
        "IMAGINE__BOT__DATA_DIR": f'"{tmp_path / "data"}"'})
    fake_upstream.push("gemini", Reply(status=503, json={"error": {"code": 503,
                                                                   "status": "UNAVAILABLE"}}))
    core = build_core(settings)
    await core.start()
    try:
        reply = await jobs(core).imagine(ImageRequest(Actor("telegram", "1"),
                                                        ChatRef("telegram", "1"), "a fox"))
        assert reply.ok, reply.text
        metrics = core.metrics.render().decode()
        assert 'imagine_upstream_retries_total{provider="gemini"} 1.0' in metrics
    finally:
        await core.stop(grace=0)
