"""``openai-chat`` driven through the real openai SDK against the loopback fake relay."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.bootstrap import build_core
from bot.config import Settings
from bot.domain import Actor, ChatRef, ImageRequest
from bot.errors import (
    JobTimeout,
    NoImage,
    Refused,
    UpstreamBusy,
    UpstreamConfig,
    UpstreamError,
    UpstreamNoCredit,
)
from bot.offload import PARSERS
from bot.providers.base import HistoryTurn, ProviderRequest
from bot.providers.openai_chat import OpenAIChatProvider
from bot.providers.retry import RetryPolicy
from tests.fake_upstream import (
    FakeUpstream,
    Reply,
    Sleeps,
    b64,
    chat_body,
    data_url,
    fake_upstream_fixture,  # noqa: F401
    img,
    openai_error,
    png,
    sleeps_fixture,  # noqa: F401
    slow_link_order,
)
from tests.outcomes import jobs

KEY = "sk-or-v1-TESTKEY-0123456789"
RED, GREEN, BLUE = png(color="red"), png(color="green"), png(color="blue")


@pytest.fixture
async def make(fake_upstream: FakeUpstream, sleeps: Sleeps
               ) -> AsyncIterator[Callable[..., OpenAIChatProvider]]:
    """Build providers pointed at the fake; closed after the test."""
    made: list[OpenAIChatProvider] = []

    def build(max_retries: int = 3) -> OpenAIChatProvider:
        provider = OpenAIChatProvider(
            name="relay", base_url=fake_upstream.v1, api_key=KEY, key_env="RELAY_API_KEY",
            policy=RetryPolicy(max_retries=max_retries, sleep=sleeps, jitter=lambda: 0.5))
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


def req(prompt: str = "a cat", **kw: Any) -> ProviderRequest:
    """A request for nano-banana-pro."""
    return ProviderRequest(model_id="google/gemini-3-pro-image", prompt=prompt, **kw)


async def test_answers_on_a_slow_link_hold_no_parse_slot(
        make: Callable[..., OpenAIChatProvider], fake_upstream: FakeUpstream) -> None:
    """The SDK's body is ours to read (with_streaming_response): under the slot, lent out
    while the bytes are still on their way (bot/offload.py: quick)."""
    provider = make()
    order = await slow_link_order(lambda name: provider.generate(req(name)), fake_upstream,
                                  "chat", Reply(json=chat_body("", images=[
        {"type": "image_url", "image_url": {"url": data_url(GREEN)}}])), PARSERS)
    assert order == ["fast", *["slow"] * PARSERS]  # it did not wait a second for them


async def test_request_body_and_headers(make: Callable[..., OpenAIChatProvider],
                                        fake_upstream: FakeUpstream) -> None:
    result = await make().generate(req(references=(img(RED), img(GREEN)), size="2K",
                                       aspect="16:9"))
    assert result.shape == "chat.images.image_url" and result.images[0].data == RED
    (seen,) = fake_upstream.seen("chat")
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.headers["x-stainless-retry-count"] == "0"
    body = seen.json
    assert body["model"] == "google/gemini-3-pro-image"
    assert body["modalities"] == ["image", "text"]
    assert body["image_config"] == {"aspect_ratio": "16:9", "image_size": "2K"}
    assert body["google"] == {"image_config": {"aspect_ratio": "16:9", "image_size": "2K"}}
    (message,) = body["messages"]
    text, first, second = message["content"]
    assert text["type"] == "text" and text["text"].startswith("a cat")
    assert "image 1" in text["text"] and "image 2" in text["text"]
    assert first == {"type": "image_url", "image_url": {"url": data_url(RED)}}
    assert second["image_url"]["url"] == data_url(GREEN)


async def test_single_image_not_numbered_and_no_size_when_not_sent(
        make: Callable[..., OpenAIChatProvider], fake_upstream: FakeUpstream) -> None:
    await make().generate(req("make it blue", references=(img(RED),), size="1K",
                              aspect="1:1", send_size=False))
    body = fake_upstream.seen("chat")[0].json
    assert body["messages"][0]["content"][0] == {"type": "text", "text": "make it blue"}
    assert body["image_config"] == {"aspect_ratio": "1:1"}
    assert body["google"]["image_config"] == {"aspect_ratio": "1:1"}


async def test_edit_sends_previous_output_as_image_url(
        make: Callable[..., OpenAIChatProvider], fake_upstream: FakeUpstream) -> None:
    history = (
        HistoryTurn(prompt="a cat", inputs=(), outputs=(img(RED),),
                    provider_state=json.dumps({"text": "Here is a cat."})),
        HistoryTurn(prompt="make it green", inputs=(), outputs=(img(GREEN),)),
    )
    await make().generate(req("add a hat", history=history, references=(img(BLUE),)))
    messages = fake_upstream.seen("chat")[0].json["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == "a cat" and messages[1]["content"] == "Here is a cat."
    assert messages[3]["content"] == "(1 image generated)"
    text, previous, reference = messages[4]["content"]
    assert "add a hat" in text["text"] and "image 1 (the image to edit)" in text["text"]
    assert previous["image_url"]["url"] == data_url(GREEN)
    assert reference["image_url"]["url"] == data_url(BLUE)
    assert "![" not in json.dumps(messages)


@pytest.mark.parametrize(("answer", "shape"), [
    (lambda u: chat_body("", images=[{"type": "image_url", "image_url": {"url": data_url(RED)}}]),
     "chat.images.image_url"),
    (lambda u: chat_body(None, images=[{"b64_json": b64(RED)}]), "chat.images.b64_json"),
    (lambda u: chat_body(f"![image]({data_url(RED)})"), "chat.content.markdown"),
    (lambda u: chat_body(f"![image]({u})"), "chat.content.markdown"),
    (lambda u: chat_body(f"Done: {u}"), "chat.content.url"),
    (lambda u: chat_body([{"type": "image_url", "image_url": {"url": b64(RED)}}]),
     "chat.content.parts"),
], ids=["images", "images-b64", "markdown-data", "markdown-url", "bare-url", "parts-bare-b64"])
async def test_response_shapes(make: Callable[..., OpenAIChatProvider],
                               fake_upstream: FakeUpstream,
                               answer: Callable[[str], dict[str, Any]], shape: str) -> None:
    url = fake_upstream.serve("result.png", RED)
    fake_upstream.push("chat", Reply(json=answer(url)))
    result = await make().generate(req())
    assert result.shape == shape and result.images[0].data == RED


async def test_refusal_via_native_finish_reason(make: Callable[..., OpenAIChatProvider],
                                                fake_upstream: FakeUpstream) -> None:
    fake_upstream.push("chat", Reply(json=chat_body("I can't create that image.",
                                                    native="IMAGE_SAFETY")))
    with pytest.raises(Refused) as info:
        await make().generate(req())
    assert info.value.params["reason"] == "I can't create that image."
    assert len(fake_upstream.seen("chat")) == 1


async def test_text_only_is_no_image(make: Callable[..., OpenAIChatProvider],
                                     fake_upstream: FakeUpstream) -> None:
    fake_upstream.push("chat", Reply(json=chat_body("What colour should the cat be?")))
    with pytest.raises(NoImage) as info:
        await make().generate(req())
    assert info.value.params["text"] == "What colour should the cat be?"


@pytest.mark.parametrize(("reply", "kind"), [
    (openai_error(400, "Your request was rejected as a result of our safety system.",
                  code="moderation_blocked"), Refused),
    (openai_error(400, "Invalid value for 'modalities'"), UpstreamError),
    (openai_error(401, f"Invalid API key {KEY}", code="invalid_api_key"), UpstreamConfig),
    (openai_error(403, "This key is disabled"), UpstreamConfig),
    (openai_error(402, "Insufficient credits. Add more using https://openrouter.ai/credits"),
     UpstreamNoCredit),
    (openai_error(403, "用户额度不足", type_="new_api_error", code="insufficient_user_quota"),
     UpstreamNoCredit),
    (openai_error(429, "You exceeded your current quota", type_="insufficient_quota",
                  code="insufficient_quota"), UpstreamNoCredit),
    (Reply(json={"id": "x", "choices": [{"message": {"content": None, "images": [
        {"image_url": {"url": data_url(RED)[:-60]}}]}}]}), UpstreamError),
    (Reply(body="<html><title>Just a moment...</title></html>", content_type="text/html"),
     UpstreamError),
], ids=["moderation", "bad-request", "401", "403", "402", "403-quota", "429-insufficient",
        "truncated-base64", "html-200"])
async def test_final_failures_are_not_retried(make: Callable[..., OpenAIChatProvider],
                                              fake_upstream: FakeUpstream, sleeps: Sleeps,
                                              caplog: pytest.LogCaptureFixture,
                                              reply: Reply, kind: type[Exception]) -> None:
    fake_upstream.push("chat", reply)
    with pytest.raises(kind) as info:
        await make().generate(req())
    assert len(fake_upstream.seen("chat")) == 1 and sleeps == []
    assert KEY not in str(info.value) and KEY not in caplog.text
    if kind is UpstreamConfig:
        assert "RELAY_API_KEY" in str(info.value) and "RELAY_API_KEY" in caplog.text


async def test_429_with_retry_after_then_success(make: Callable[..., OpenAIChatProvider],
                                                 fake_upstream: FakeUpstream,
                                                 sleeps: Sleeps) -> None:
    fake_upstream.push("chat", openai_error(429, "Rate limit exceeded", headers={
        "Retry-After": "2"}))
    result = await make().generate(req())
    assert result.images[0].data == RED
    assert len(fake_upstream.seen("chat")) == 2 and sleeps == [2.0]


@pytest.mark.parametrize("reply", [
    openai_error(500, "internal"),
    openai_error(503, "overloaded"),
    Reply(status=502, body="<html><title>502 Bad Gateway</title></html>",
          content_type="text/html"),
    Reply(status=504, json=[{"error": {"code": 504, "message": "deadline"}}]),
    Reply(drop=True),
    Reply(json=chat_body("", images=[{"image_url": {"url": data_url(RED)}}]), truncate_at=40),
], ids=["500", "503", "502-html", "504-array", "dropped", "truncated-body"])
async def test_transient_failures_retry_then_busy(make: Callable[..., OpenAIChatProvider],
                                                  fake_upstream: FakeUpstream, sleeps: Sleeps,
                                                  reply: Reply) -> None:
    fake_upstream.push("chat", reply, reply, reply)
    with pytest.raises(UpstreamBusy) as info:
        await make(max_retries=2).generate(req())
    assert len(fake_upstream.seen("chat")) == 3 and sleeps == [0.75, 1.5]
    assert info.value.params["retry_after"] >= 1
    fake_upstream.push("chat", reply)
    result = await make(max_retries=2).generate(req())  # the next answer is the default image
    assert result.images[0].data == RED


async def test_slow_answers_time_out_and_retry(make: Callable[..., OpenAIChatProvider],
                                               fake_upstream: FakeUpstream,
                                               sleeps: Sleeps) -> None:
    fake_upstream.push("chat", Reply(delay=5), Reply(delay=5))
    with pytest.raises(JobTimeout):
        await make(max_retries=1).generate(req(timeout=0.3))
    assert len(fake_upstream.seen("chat")) == 2 and len(sleeps) == 1


async def test_provider_state_carries_the_text(make: Callable[..., OpenAIChatProvider],
                                               fake_upstream: FakeUpstream) -> None:
    fake_upstream.push("chat", Reply(json=chat_body(
        "A cat.", images=[{"image_url": {"url": data_url(RED)}}])))
    result = await make().generate(req())
    assert json.loads(result.provider_state or "{}") == {"text": "A cat."}
    assert result.usage["total_tokens"] == 1300


async def test_probe(make: Callable[..., OpenAIChatProvider], fake_upstream: FakeUpstream,
                     sleeps: Sleeps) -> None:
    provider = make()
    assert await provider.probe() == "ok (1 models listed)"
    assert fake_upstream.seen("models")[0].headers["Authorization"] == f"Bearer {KEY}"
    fake_upstream.push("models", openai_error(503, "down"))
    with pytest.raises(UpstreamBusy):
        await provider.probe()
    assert sleeps == []  # a probe is one call, never retried


@pytest.mark.parametrize(("replies", "error", "words"), [
    ([Reply(json=chat_body("I can't create that image.", native="IMAGE_SAFETY"))],
     "error.refused", "I can't create that image."),
    ([Reply(json=chat_body("Which cat?"))], "error.no_image", "Which cat?"),
    ([openai_error(503, "overloaded")] * 2, "error.busy", "Try again in"),
    ([openai_error(401, f"bad key {KEY}")], "error.unavailable", "unavailable"),
    ([openai_error(402, "Insufficient credits")], "error.unavailable", "unavailable"),
    ([Reply(body="<html>Bad gateway</html>", content_type="text/html")], "error.upstream",
     "failed to answer"),
    ([Reply(delay=5)] * 2, "error.timeout", "longer than"),
], ids=["refused", "no-image", "busy", "bad-key", "no-credit", "html", "timeout"])
async def test_failures_are_refunded_through_the_service(
        fake_upstream: FakeUpstream, sleeps: Sleeps, tmp_path: Path, replies: list[Reply],
        error: str, words: str) -> None:
    settings = Settings.model_validate({
        "bot": {"data_dir": str(tmp_path / "data")},
        "limits": {"timeout_seconds": 0.5},
        "providers": {"relay": {"api": "openai-chat", "base_url": fake_upstream.v1,
                                "api_key_env": "RELAY_API_KEY"}}})
    provider = OpenAIChatProvider(
        name="relay", base_url=fake_upstream.v1, api_key=KEY, key_env="RELAY_API_KEY",
        policy=RetryPolicy(max_retries=1, sleep=sleeps, jitter=lambda: 0.5))
    core = build_core(settings, providers={"relay": provider})
    await core.start()
    actor, chat = Actor("telegram", "42"), ChatRef("telegram", "42")
    try:
        before = (await core.service.usage(actor)).credits_left
        fake_upstream.push("chat", *replies)
        reply = await jobs(core).imagine(ImageRequest(actor=actor, chat=chat, prompt="a cat"))
        assert reply.error == error and words in reply.text and KEY not in reply.text
        assert "Nothing was charged" in reply.text
        assert (await core.service.usage(actor)).credits_left == before
        kinds = [e.kind for e in await core.store.ledger(actor.key)]
        assert kinds.count("reserve") == 1 and kinds.count("refund") == 1
        assert "settle" not in kinds
    finally:
        await core.stop(grace=0)
