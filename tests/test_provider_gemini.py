"""``gemini`` (native generateContent over httpx) against the loopback fake."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.bootstrap import build_core
from bot.config import Settings
from bot.domain import Actor, ChatRef, ImageRequest, MessageRef
from bot.errors import (
    NoImage,
    Refused,
    UpstreamBusy,
    UpstreamConfig,
    UpstreamError,
    UpstreamNoCredit,
)
from bot.offload import PARSERS
from bot.providers.base import HistoryTurn, ProviderRequest
from bot.providers.gemini import GeminiProvider, auth_headers
from bot.providers.retry import RetryPolicy
from tests.fake_upstream import (
    FakeUpstream,
    Reply,
    Sleeps,
    b64,
    fake_upstream_fixture,  # noqa: F401
    gemini_body,
    google_error,
    img,
    png,
    sleeps_fixture,  # noqa: F401
    slow_link_order,
)
from tests.outcomes import jobs

KEY = "AIzaSy-TESTKEY-0123456789"
RED, GREEN, BLUE = png(color="red"), png(color="green"), png(color="blue")
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


@pytest.fixture
async def make(fake_upstream: FakeUpstream, sleeps: Sleeps
               ) -> AsyncIterator[Callable[..., GeminiProvider]]:
    """Build providers pointed at the fake; closed after the test."""
    made: list[GeminiProvider] = []

    def build(max_retries: int = 3, **kw: Any) -> GeminiProvider:
        kw.setdefault("base_url", fake_upstream.url)
        provider = GeminiProvider(
            name="google", api_key=KEY, key_env="GEMINI_API_KEY",
            policy=RetryPolicy(max_retries=max_retries, sleep=sleeps, jitter=lambda: 0.5), **kw)
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


def req(prompt: str = "a banana", **kw: Any) -> ProviderRequest:
    """A request for nano-banana-pro."""
    return ProviderRequest(model_id="gemini-3-pro-image", prompt=prompt, **kw)


async def test_request_body(make: Callable[..., GeminiProvider],
                            fake_upstream: FakeUpstream) -> None:
    result = await make().generate(req(references=(img(RED), img(GREEN)), size="4K",
                                       aspect="21:9"))
    assert result.shape == "native.inline_data" and result.images[0].data == RED
    (seen,) = fake_upstream.seen("gemini")
    assert seen.path == "/v1beta/models/gemini-3-pro-image:generateContent"
    assert seen.headers["Authorization"] == f"Bearer {KEY}"  # loopback is not a Google host
    assert "x-goog-api-key" not in seen.headers
    assert seen.json["generationConfig"] == {
        "responseModalities": ["TEXT", "IMAGE"],
        "imageConfig": {"aspectRatio": "21:9", "imageSize": "4K"},
    }
    (content,) = seen.json["contents"]
    assert content["role"] == "user"
    assert content["parts"] == [
        {"text": "a banana"},
        {"inline_data": {"mime_type": "image/png", "data": b64(RED)}},
        {"inline_data": {"mime_type": "image/png", "data": b64(GREEN)}},
    ]


async def test_no_image_size_for_models_without_one(make: Callable[..., GeminiProvider],
                                                    fake_upstream: FakeUpstream) -> None:
    await make().generate(ProviderRequest(model_id="gemini-3.1-flash-lite-image", prompt="x",
                                          size="1K", aspect="3:4", send_size=False))
    config = fake_upstream.seen("gemini")[0].json["generationConfig"]
    assert config["imageConfig"] == {"aspectRatio": "3:4"}


async def test_auth_override_and_base_url_forms(make: Callable[..., GeminiProvider],
                                                fake_upstream: FakeUpstream) -> None:
    await make(auth="x-goog-api-key", base_url=f"{fake_upstream.url}/v1beta/").generate(req())
    seen = fake_upstream.seen("gemini")[0]
    assert seen.headers["x-goog-api-key"] == KEY and "Authorization" not in seen.headers
    assert seen.path.startswith("/v1beta/models/")


def test_auth_defaults_by_host() -> None:
    google = "https://generativelanguage.googleapis.com"
    assert auth_headers(google, "k") == {"x-goog-api-key": "k"}
    assert auth_headers("https://relay.example.com", "k") == {"Authorization": "Bearer k"}
    assert auth_headers(google, "k", "bearer") == {"Authorization": "Bearer k"}


async def test_multi_turn_replays_parts_with_signatures(make: Callable[..., GeminiProvider],
                                                        fake_upstream: FakeUpstream) -> None:
    parts: list[dict[str, Any]] = [
        {"text": "Planning the composition.", "thought": True},
        {"inlineData": {"mimeType": "image/png", "data": b64(BLUE)}, "thought": True},
        {"text": "Here is your banana.", "thoughtSignature": "U0lHLTE="},
        {"inlineData": {"mimeType": "image/png", "data": b64(GREEN)},
         "thoughtSignature": "U0lHLTI=", "futureField": {"kept": True}},
    ]
    fake_upstream.push("gemini", Reply(json=gemini_body(parts)))
    provider = make()
    first = await provider.generate(req(references=(img(RED),)))
    assert first.images[0].data == GREEN and first.text == "Here is your banana."
    state = json.loads(first.provider_state or "")
    assert b64(GREEN) not in (first.provider_state or "")  # the output is stored once, as an image
    assert state["outputs"] == {"3": 0}

    turn = HistoryTurn(prompt="a banana", inputs=(img(RED),), outputs=first.images,
                       provider_state=first.provider_state)
    await provider.generate(req("now peel it", history=(turn,)))
    contents = fake_upstream.seen("gemini")[1].json["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[0]["parts"] == [
        {"text": "a banana"}, {"inline_data": {"mime_type": "image/png", "data": b64(RED)}}]
    assert contents[1]["parts"] == parts  # exactly as received, signatures and all
    assert contents[2]["parts"] == [{"text": "now peel it"}]


async def test_history_without_state_replays_outputs(make: Callable[..., GeminiProvider],
                                                     fake_upstream: FakeUpstream) -> None:
    turn = HistoryTurn(prompt="a cat", inputs=(), outputs=(img(GREEN),))
    await make().generate(req("bigger", history=(turn,)))
    contents = fake_upstream.seen("gemini")[0].json["contents"]
    # No stored signature (another route made it): Google's documented placeholder, never bare.
    assert contents[1] == {"role": "model", "parts": [
        {"inline_data": {"mime_type": "image/png", "data": b64(GREEN)},
         "thoughtSignature": "skip_thought_signature_validator"}]}


async def test_retry_info_delay_is_honoured(make: Callable[..., GeminiProvider],
                                            fake_upstream: FakeUpstream, sleeps: Sleeps) -> None:
    fake_upstream.push("gemini", google_error(
        429, "RESOURCE_EXHAUSTED", "Resource exhausted",
        [{"@type": RETRY_INFO, "retryDelay": "7.5s"}]))
    result = await make().generate(req())
    assert result.images[0].data == RED
    assert sleeps == [7.5] and len(fake_upstream.seen("gemini")) == 2


async def test_retry_delay_beyond_cap_fails_fast(make: Callable[..., GeminiProvider],
                                                 fake_upstream: FakeUpstream,
                                                 sleeps: Sleeps) -> None:
    fake_upstream.push("gemini", google_error(
        429, "RESOURCE_EXHAUSTED", "Resource exhausted",
        [{"@type": RETRY_INFO, "retryDelay": "55s"}]))
    with pytest.raises(UpstreamBusy) as info:
        await make().generate(req())
    assert info.value.params["retry_after"] == 55 and sleeps == []


async def test_quota_limit_zero_is_not_retried(make: Callable[..., GeminiProvider],
                                               fake_upstream: FakeUpstream,
                                               sleeps: Sleeps) -> None:
    fake_upstream.push("gemini", google_error(
        429, "RESOURCE_EXHAUSTED",
        "You exceeded your current quota. Quota exceeded for metric: generativelanguage."
        "googleapis.com/generate_content_free_tier_requests, limit: 0, model: "
        "gemini-3-pro-image", [{"@type": RETRY_INFO, "retryDelay": "20s"}]))
    with pytest.raises(UpstreamNoCredit):
        await make().generate(req())
    assert len(fake_upstream.seen("gemini")) == 1 and sleeps == []


async def test_invalid_key_is_a_config_error(make: Callable[..., GeminiProvider],
                                             fake_upstream: FakeUpstream,
                                             caplog: pytest.LogCaptureFixture) -> None:
    fake_upstream.push("gemini", google_error(
        400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
        [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]))
    with pytest.raises(UpstreamConfig) as info:
        await make().generate(req())
    assert "GEMINI_API_KEY" in str(info.value) and "GEMINI_API_KEY" in caplog.text
    assert KEY not in str(info.value) and KEY not in caplog.text


@pytest.mark.parametrize(("body", "kind", "words"), [
    (gemini_body(None, block="PROHIBITED_CONTENT"), Refused, ""),
    (gemini_body([{"text": "I can't help with that."}], finish="IMAGE_SAFETY"), Refused,
     "I can't help with that."),
    (gemini_body([], finish="NO_IMAGE"), NoImage, ""),
], ids=["block-reason", "image-safety", "no-image"])
async def test_refusals(make: Callable[..., GeminiProvider], fake_upstream: FakeUpstream,
                        body: dict[str, Any], kind: type[Exception], words: str) -> None:
    fake_upstream.push("gemini", Reply(json=body))
    with pytest.raises(kind) as info:
        await make().generate(req())
    assert words in str(info.value)
    assert len(fake_upstream.seen("gemini")) == 1


async def test_vertex_array_error_is_retried(make: Callable[..., GeminiProvider],
                                             fake_upstream: FakeUpstream, sleeps: Sleeps) -> None:
    fake_upstream.push("gemini", Reply(status=503, json=[{"error": {
        "code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}]))
    assert (await make().generate(req())).images[0].data == RED
    assert sleeps == [0.75]


@pytest.mark.parametrize("reply", [
    Reply(body="<html><body>Service Unavailable</body></html>", content_type="text/html"),
    Reply(json=gemini_body([{"inlineData": {"mimeType": "image/png",
                                            "data": b64(png(64, 64))[:-40]}}])),
], ids=["html-200", "truncated-base64"])
async def test_broken_bodies(make: Callable[..., GeminiProvider], fake_upstream: FakeUpstream,
                             reply: Reply) -> None:
    fake_upstream.push("gemini", reply)
    with pytest.raises(UpstreamError):
        await make().generate(req())
    assert len(fake_upstream.seen("gemini")) == 1


async def test_dropped_connection_is_retried(make: Callable[..., GeminiProvider],
                                             fake_upstream: FakeUpstream, sleeps: Sleeps) -> None:
    fake_upstream.push("gemini", Reply(drop=True), Reply(truncate_at=10, json=gemini_body([])))
    assert (await make().generate(req())).images[0].data == RED
    assert len(fake_upstream.seen("gemini")) == 3 and sleeps == [0.75, 1.5]


async def test_answers_on_a_slow_link_hold_no_parse_slot(
        make: Callable[..., GeminiProvider], fake_upstream: FakeUpstream) -> None:
    """A body still arriving is read with its parse slot lent out (bot/offload.py: quick)."""
    provider = make()
    order = await slow_link_order(lambda name: provider.generate(req(name)), fake_upstream,
                                  "gemini", Reply(json=gemini_body([{"inlineData": {
        "mimeType": "image/png", "data": b64(GREEN)}}])), PARSERS)
    assert order == ["fast", *["slow"] * PARSERS]  # it did not wait a second for them


async def test_usage_is_reported(make: Callable[..., GeminiProvider]) -> None:
    result = await make().generate(req())
    assert result.usage == {"promptTokenCount": 7, "candidatesTokenCount": 1290,
                            "totalTokenCount": 1297}


async def test_probe(make: Callable[..., GeminiProvider], fake_upstream: FakeUpstream) -> None:
    provider = make()
    assert await provider.probe() == "ok (4 models listed)"
    assert fake_upstream.seen("gemini.models")[0].headers["Authorization"] == f"Bearer {KEY}"
    fake_upstream.push("gemini.models", google_error(
        400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."))
    with pytest.raises(UpstreamConfig, match="GEMINI_API_KEY"):
        await provider.probe()


async def test_service_edit_replays_signed_parts_from_the_store(
        fake_upstream: FakeUpstream, sleeps: Sleeps, tmp_path: Path) -> None:
    settings = Settings.model_validate({
        "bot": {"data_dir": str(tmp_path / "data"), "default_model": "nano-banana-pro"},
        "providers": {"google": {"api": "gemini", "api_key_env": "GEMINI_API_KEY"}}})
    provider = GeminiProvider(name="google", base_url=fake_upstream.url, api_key=KEY,
                              policy=RetryPolicy(sleep=sleeps))
    core = build_core(settings, providers={"google": provider})
    await core.start()
    actor, chat = Actor("telegram", "7"), ChatRef("telegram", "7")
    parts: list[dict[str, Any]] = [
        {"text": "Thinking.", "thought": True, "thoughtSignature": "U0lHLTA="},
        {"inlineData": {"mimeType": "image/png", "data": b64(png(16, 16, "yellow"))},
         "thoughtSignature": "U0lHLTE="},
    ]
    try:
        fake_upstream.push("gemini", Reply(json=gemini_body(parts)))
        first = await jobs(core).imagine(ImageRequest(actor=actor, chat=chat, prompt="banana"))
        assert first.ok and first.turn_id and first.images[0].width == 16
        shown = MessageRef("telegram", "7", "100")
        await core.service.bind(first.turn_id, [shown])
        second = await jobs(core).edit(ImageRequest(actor=actor, chat=chat, prompt="peel it"),
                                         reply_to=shown)
        assert second.ok, second.text
        contents = fake_upstream.seen("gemini")[1].json["contents"]
        assert [c["role"] for c in contents] == ["user", "model", "user"]
        assert contents[1]["parts"] == parts
        assert contents[2]["parts"] == [{"text": "peel it"}]
        config = fake_upstream.seen("gemini")[1].json["generationConfig"]
        assert config["imageConfig"]["imageSize"] == "1K"
    finally:
        await core.stop(grace=0)
