"""``openai-images`` (images.generate / images.edit via the real openai SDK) against the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.errors import Refused, UpstreamBusy, UpstreamConfig
from bot.providers.base import HistoryTurn, ProviderRequest
from bot.providers.openai_images import OpenAIImagesProvider, images_size
from bot.providers.retry import RetryPolicy
from tests.fake_upstream import (
    FakeUpstream,
    Reply,
    Sleeps,
    b64,
    fake_upstream_fixture,  # noqa: F401
    images_body,
    img,
    jpeg,
    openai_error,
    png,
    sleeps_fixture,  # noqa: F401
)

KEY = "sk-proj-TESTKEY-0123456789"
RED, GREEN, BLUE = png(color="red"), png(color="green"), png(color="blue")


@pytest.fixture
async def provider(fake_upstream: FakeUpstream, sleeps: Sleeps
                   ) -> AsyncIterator[OpenAIImagesProvider]:
    """A provider pointed at the fake."""
    built = OpenAIImagesProvider(
        name="openai", base_url=fake_upstream.v1, api_key=KEY, key_env="OPENAI_API_KEY",
        policy=RetryPolicy(max_retries=2, sleep=sleeps, jitter=lambda: 0.5))
    yield built
    await built.aclose()


def req(model: str = "gpt-image-1", prompt: str = "a fox", **kw: Any) -> ProviderRequest:
    """A request."""
    return ProviderRequest(model_id=model, prompt=prompt, **kw)


async def test_generate_request(provider: OpenAIImagesProvider,
                                fake_upstream: FakeUpstream) -> None:
    result = await provider.generate(req(aspect="9:16", size="1K"))
    assert result.shape == "images.b64_json" and result.images[0].data == RED
    (seen,) = fake_upstream.seen("images.generate")
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.json == {"model": "gpt-image-1", "prompt": "a fox", "n": 1, "size": "1024x1536"}


async def test_dall_e_asks_for_base64(provider: OpenAIImagesProvider,
                                      fake_upstream: FakeUpstream) -> None:
    fake_upstream.push("images.generate", Reply(json=images_body(
        {"b64_json": b64(jpeg()), "revised_prompt": "A red fox in snow"})))
    result = await provider.generate(req("dall-e-3", aspect="16:9"))
    body = fake_upstream.seen("images.generate")[0].json
    assert body["response_format"] == "b64_json" and body["size"] == "1792x1024"
    assert result.text == "A red fox in snow" and result.images[0].mime == "image/jpeg"


async def test_edit_sends_references_as_files(provider: OpenAIImagesProvider,
                                              fake_upstream: FakeUpstream) -> None:
    turn = HistoryTurn(prompt="a fox", inputs=(), outputs=(img(GREEN),))
    await provider.generate(req(prompt="add a scarf", history=(turn,),
                                references=(img(BLUE, "scarf.png"),)))
    (seen,) = fake_upstream.seen("images.edit")
    files = seen.form["image[]"]
    assert [(name, ctype, data) for name, ctype, data in files] == [
        ("image1.png", "image/png", GREEN), ("scarf.png", "image/png", BLUE)]
    assert seen.form["prompt"][0][2] == b"add a scarf"
    assert seen.form["model"][0][2] == b"gpt-image-1"
    assert not fake_upstream.seen("images.generate")


async def test_single_reference_uses_the_image_field(provider: OpenAIImagesProvider,
                                                     fake_upstream: FakeUpstream) -> None:
    await provider.generate(req(references=(img(RED),)))
    assert [f[2] for f in fake_upstream.seen("images.edit")[0].form["image"]] == [RED]


async def test_url_answer_is_downloaded(provider: OpenAIImagesProvider,
                                        fake_upstream: FakeUpstream) -> None:
    url = fake_upstream.serve("gen.png", GREEN)
    fake_upstream.push("images.generate", Reply(json=images_body({"url": url})))
    result = await provider.generate(req())
    assert result.shape == "images.url" and result.images[0].data == GREEN


async def test_moderation_is_a_refusal(provider: OpenAIImagesProvider,
                                       fake_upstream: FakeUpstream, sleeps: Sleeps) -> None:
    fake_upstream.push("images.generate", openai_error(
        400, "Your request was rejected as a result of our safety system.",
        code="moderation_blocked"))
    with pytest.raises(Refused) as info:
        await provider.generate(req())
    assert "safety system" in info.value.params["reason"] and sleeps == []


async def test_bad_key(provider: OpenAIImagesProvider, fake_upstream: FakeUpstream) -> None:
    fake_upstream.push("images.generate", openai_error(401, "Incorrect API key provided"))
    with pytest.raises(UpstreamConfig, match="OPENAI_API_KEY"):
        await provider.generate(req())


async def test_server_errors_are_retried(provider: OpenAIImagesProvider,
                                         fake_upstream: FakeUpstream, sleeps: Sleeps) -> None:
    fake_upstream.push("images.edit", openai_error(500, "oops"), Reply(drop=True))
    result = await provider.generate(req(references=(img(RED),)))
    assert result.images[0].data == RED and sleeps == [0.75, 1.5]
    fake_upstream.push("images.generate", *[openai_error(503, "busy")] * 3)
    with pytest.raises(UpstreamBusy):
        await provider.generate(req())


@pytest.mark.parametrize(("model", "size", "aspect", "expected"), [
    ("gpt-image-1", None, None, None),
    ("gpt-image-1", "1K", "1:1", "1024x1024"),
    ("gpt-image-1", "2K", "3:2", "1536x1024"),
    ("gpt-image-1", None, "4:5", "1024x1536"),
    ("gpt-image-1", None, "9:8", "1024x1024"),
    ("gpt-image-1", None, "2:3", "1024x1536"),
    ("dall-e-3", None, "9:16", "1024x1792"),
    ("dall-e-2", None, "16:9", "1024x1024"),
    ("imagen-4.0-generate-001", "1536X1024", "1:1", "1536x1024"),
    ("gpt-image-1", None, "nonsense", None),
])
def test_images_size(model: str, size: str | None, aspect: str | None,
                     expected: str | None) -> None:
    assert images_size(model, size, aspect) == expected


async def test_probe(provider: OpenAIImagesProvider, fake_upstream: FakeUpstream) -> None:
    assert await provider.probe() == "ok (1 models listed)"
    fake_upstream.push("models", openai_error(401, "Incorrect API key provided"))
    with pytest.raises(UpstreamConfig, match="OPENAI_API_KEY"):
        await provider.probe()
