"""The response extractor: every shape, every refusal form, broken bodies and URL downloads."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from PIL import Image

from bot import images as images_module
from bot.errors import NoImage, Refused, UpstreamError
from bot.providers import extract as extract_module
from bot.providers.extract import extract
from bot.providers.retry import TransientError
from bot.providers.wire import b64 as b64_module
from bot.providers.wire.fetch import UrlFetcher
from bot.providers.wire.http_errors import read_json
from tests.fake_upstream import (
    FakeUpstream,
    Reply,
    b64,
    chat_body,
    data_url,
    fake_upstream_fixture,  # noqa: F401
    gemini_body,
    images_body,
    jpeg,
    png,
)

RED, GREEN, BLUE = png(color="red"), png(color="green"), png(12, 6, color="blue")


@pytest.fixture
async def fetcher(fake_upstream: FakeUpstream) -> AsyncIterator[UrlFetcher]:
    """A real downloader for the fake's origin (loopback: allowed as the route's own host)."""
    f = UrlFetcher(timeout=2.0, allow=(fake_upstream.url,))
    yield f
    await f.aclose()


async def test_images_api_b64_json() -> None:
    result = await extract(images_body({"b64_json": b64(RED), "revised_prompt": "a red square"}))
    assert result.shape == "images.b64_json"
    assert result.images[0].data == RED and result.images[0].mime == "image/png"
    assert (result.images[0].width, result.images[0].height) == (8, 8)
    assert result.text == "a red square"


async def test_images_api_url(fake_upstream: FakeUpstream, fetcher: UrlFetcher) -> None:
    url = fake_upstream.serve("out.png", GREEN)
    result = await extract(images_body({"url": url}), fetch=fetcher)
    assert result.shape == "images.url" and result.images[0].data == GREEN


async def test_native_inline_data_takes_last_non_thought_image() -> None:
    parts: list[dict[str, Any]] = [
        {"text": "thinking about it", "thought": True},
        {"inlineData": {"mimeType": "image/png", "data": b64(RED)}, "thought": True},
        {"text": "Here you go."},
        {"inlineData": {"mimeType": "image/png", "data": b64(GREEN)},
         "thoughtSignature": "c2ln"},
        {"inlineData": {"mimeType": "image/png", "data": b64(BLUE)}, "thought": True},
    ]
    result = await extract(gemini_body(parts))
    assert result.shape == "native.inline_data"
    assert [i.data for i in result.images] == [GREEN]
    assert result.text == "Here you go." and result.finish_reason == "STOP"
    assert result.usage["totalTokenCount"] == 1297


async def test_native_snake_case_inline_data_trusts_mime() -> None:
    parts = [{"inline_data": {"mime_type": "image/jpeg", "data": b64(jpeg())}}]
    result = await extract(gemini_body(parts))
    assert result.shape == "native.inline_data" and result.images[0].mime == "image/jpeg"


async def test_native_markdown_in_text() -> None:
    result = await extract(gemini_body([{"text": f"Done! ![img]({data_url(RED)})"}]))
    assert result.shape == "native.text.markdown" and result.images[0].data == RED


async def test_native_url_in_text(fake_upstream: FakeUpstream, fetcher: UrlFetcher) -> None:
    url = fake_upstream.serve("n.png", BLUE)
    result = await extract(gemini_body([{"text": f"Your image: {url}"}]), fetch=fetcher)
    assert result.shape == "native.text.url" and result.images[0].data == BLUE


async def test_chat_images_image_url() -> None:
    body = chat_body("Here is your image.", images=[
        {"type": "image_url", "image_url": {"url": data_url(RED)}},
        {"type": "image_url", "image_url": {"url": data_url(GREEN)}},
    ])
    result = await extract(body)
    assert result.shape == "chat.images.image_url"
    assert [i.data for i in result.images] == [RED, GREEN]
    assert result.text == "Here is your image." and result.usage["total_tokens"] == 1300


async def test_chat_images_b64_json() -> None:
    result = await extract(chat_body(None, images=[{"b64_json": b64(BLUE)}]))
    assert result.shape == "chat.images.b64_json" and result.images[0].data == BLUE


async def test_chat_markdown_data_url() -> None:
    result = await extract(chat_body(f"Sure!\n\n![image]({data_url(jpeg(), 'image/jpeg')})"))
    assert result.shape == "chat.content.markdown" and result.images[0].mime == "image/jpeg"


async def test_chat_markdown_http_url(fake_upstream: FakeUpstream, fetcher: UrlFetcher) -> None:
    url = fake_upstream.serve("md", RED)  # no extension: Markdown makes it an image anyway
    result = await extract(chat_body(f"![result]({url})"), fetch=fetcher)
    assert result.shape == "chat.content.markdown" and result.images[0].data == RED


async def test_chat_bare_image_url(fake_upstream: FakeUpstream, fetcher: UrlFetcher) -> None:
    url = fake_upstream.serve("bare.png", GREEN)
    result = await extract(chat_body(f"Image generated: {url}"), fetch=fetcher)
    assert result.shape == "chat.content.url" and result.images[0].data == GREEN


async def test_chat_bare_link_that_is_not_an_image_means_no_image(
        fake_upstream: FakeUpstream, fetcher: UrlFetcher) -> None:
    url = fake_upstream.serve("docs", b"<html>docs</html>", "text/html")
    with pytest.raises(NoImage) as info:
        await extract(chat_body(f"I cannot draw that, see {url}"), fetch=fetcher)
    assert "cannot draw" in info.value.params["text"]


@pytest.mark.parametrize("url", [b64(RED), data_url(RED)], ids=["bare-base64", "data-url"])
async def test_chat_content_parts(url: str) -> None:
    body = chat_body([{"type": "text", "text": "ok"},
                      {"type": "image_url", "image_url": {"url": url}}])
    result = await extract(body)
    assert result.shape == "chat.content.parts" and result.images[0].data == RED
    assert result.text == "ok"


@pytest.mark.parametrize(("body", "reason", "finish"), [
    (gemini_body([{"text": "I can't make that image."}], finish="IMAGE_SAFETY"),
     "I can't make that image.", "IMAGE_SAFETY"),
    (gemini_body([], finish="PROHIBITED_CONTENT", finishMessage="Prohibited content."),
     "Prohibited content.", "PROHIBITED_CONTENT"),
    (gemini_body([], finish="IMAGE_PROHIBITED_CONTENT"), "", "IMAGE_PROHIBITED_CONTENT"),
    (gemini_body(None, block="SAFETY"), "", "SAFETY"),
    (chat_body("The request was flagged.", native="IMAGE_SAFETY"),
     "The request was flagged.", "IMAGE_SAFETY"),
    (chat_body(None, refusal="I won't do that."), "I won't do that.", "stop"),
    (chat_body("", finish="content_filter"), "", "content_filter"),
], ids=["image-safety", "prohibited", "image-prohibited", "block-reason", "openrouter-native",
        "openai-refusal", "content-filter"])
async def test_refusals(body: dict[str, Any], reason: str, finish: str) -> None:
    with pytest.raises(Refused) as info:
        await extract(body)
    assert info.value.params["reason"] == reason
    assert info.value.params["finish_reason"] == finish


@pytest.mark.parametrize("body", [
    gemini_body([{"text": "Here is a poem instead."}], finish="NO_IMAGE"),
    chat_body("Here is a poem instead."),
    gemini_body([{"text": "Here is a poem instead."}]),
], ids=["no-image", "chat-text-only", "native-text-only"])
async def test_text_only_is_no_image_with_the_models_words(body: dict[str, Any]) -> None:
    with pytest.raises(NoImage) as info:
        await extract(body)
    assert info.value.params["text"] == "Here is a poem instead."


async def test_truncated_base64_is_an_upstream_error() -> None:
    cut = b64(png(64, 64, "purple"))[:-40]
    cut = cut[: len(cut) // 4 * 4]  # still valid base64 framing, but the PNG is cut short
    with pytest.raises(UpstreamError, match="does not decode"):
        await extract(images_body({"b64_json": cut}))
    with pytest.raises(UpstreamError, match="not valid base64"):
        await extract(images_body({"b64_json": "iVBORw0KGgo*&^%"}))


@pytest.mark.parametrize("encode", [
    lambda d: base64.b64encode(d).decode(),
    lambda d: base64.urlsafe_b64encode(d).decode().rstrip("="),
    lambda d: base64.encodebytes(d).decode(),  # MIME: a line break every 76 characters
], ids=["standard", "urlsafe-unpadded", "line-broken"])
@pytest.mark.parametrize("size", [(8, 8), (400, 400)], ids=["inline", "threaded"])
async def test_base64_variants_decode_to_the_same_image(
        encode: Callable[[bytes], str], size: tuple[int, int]) -> None:
    buf = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(buf, "PNG")
    result = await extract(images_body({"b64_json": encode(buf.getvalue())}))
    assert result.images[0].data == buf.getvalue()


async def test_truncated_jpeg_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="does not decode"):
        await extract(images_body({"b64_json": b64(jpeg(64, 64)[:-200])}))


async def test_unrecognised_body() -> None:
    with pytest.raises(UpstreamError, match="unrecognised"):
        await extract({"hello": "world"})


async def test_large_payloads_decode_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    Image.frombytes("RGB", (400, 400), os.urandom(400 * 400 * 3)).save(buf, "PNG")
    big = buf.getvalue()
    assert len(big) > 256 * 1024
    calls: list[str] = []
    real = extract_module.run_sync

    async def spy(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(func, "__name__", "?"))
        return await real(func, *args, **kwargs)

    for module in (extract_module, b64_module, images_module):
        monkeypatch.setattr(module, "run_sync", spy)
    result = await extract(chat_body(f"![x]({data_url(big)})"))
    assert result.images[0].data == big and result.images[0].width == 400
    assert {"_b64", "_verify_sync"} <= set(calls)


async def test_a_missing_or_vague_type_is_sniffed() -> None:
    result = await extract(chat_body(f"![x]({data_url(jpeg(), 'application/octet-stream')})"))
    assert result.images[0].mime == "image/jpeg"


async def test_read_json_html_page_on_200() -> None:
    page = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head></html>"
    with pytest.raises(UpstreamError, match="HTML page instead of JSON"):
        await read_json(200, page, {}, key_env="K", secret="sk-1")


async def test_read_json_array_and_embedded_errors() -> None:
    array = b'[{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}]'
    with pytest.raises(TransientError):
        await read_json(503, array, {}, key_env="K", secret=None)
    with pytest.raises(TransientError):
        await read_json(200, array, {}, key_env="K", secret=None)
    with pytest.raises(UpstreamError, match="error body"):
        await read_json(200, b'{"error": {"message": "relay broke", "type": "new_api_error"}}',
                        {}, key_env="K", secret=None)
    with pytest.raises(UpstreamError, match="JSON list"):
        await read_json(200, b"[1, 2]", {}, key_env="K", secret=None)
    with pytest.raises(UpstreamError, match="not JSON"):
        await read_json(200, b'{"choices": [{"message": {"content": "abc', {}, key_env="K",
                        secret=None)


async def test_fetcher_refuses_non_http_schemes(fetcher: UrlFetcher) -> None:
    with pytest.raises(UpstreamError, match="non-http"):
        await fetcher("file:///etc/passwd")


async def test_fetcher_size_cap(fake_upstream: FakeUpstream) -> None:
    url = fake_upstream.serve("big.png", png(300, 300))
    small = UrlFetcher(max_bytes=200, allow=(fake_upstream.url,))
    try:
        with pytest.raises(UpstreamError, match="download cap"):
            await small(url)
    finally:
        await small.aclose()


async def test_fetcher_timeout(fake_upstream: FakeUpstream) -> None:
    url = fake_upstream.serve("slow.png", Reply(body=RED, content_type="image/png", delay=5))
    quick = UrlFetcher(timeout=0.2, allow=(fake_upstream.url,))
    try:
        with pytest.raises(UpstreamError, match="timed out"):
            await quick(url)
    finally:
        await quick.aclose()


async def test_fetcher_status_and_redirects(fake_upstream: FakeUpstream,
                                            fetcher: UrlFetcher) -> None:
    with pytest.raises(UpstreamError, match="404"):
        await fetcher(f"{fake_upstream.url}/files/missing.png")
    target = fake_upstream.serve("target.png", GREEN)
    hop = fake_upstream.serve("hop", Reply(status=302, body=b"", headers={"Location": target}))
    assert await fetcher(hop) == (GREEN, "image/png")
    evil = fake_upstream.serve("evil", Reply(status=302, body=b"",
                                             headers={"Location": "file:///etc/passwd"}))
    with pytest.raises(UpstreamError, match="non-http"):
        await fetcher(evil)


async def test_failed_strong_url_is_an_error_not_silence(fake_upstream: FakeUpstream,
                                                         fetcher: UrlFetcher) -> None:
    with pytest.raises(UpstreamError, match="404"):
        await extract(chat_body(f"![x]({fake_upstream.url}/files/gone.png)"), fetch=fetcher)
