"""One response extractor for every wire API: finds the image wherever it is, or says why not.

Shapes, by the name reported in ``ProviderResult.shape``, and where each is documented:

- ``images.b64_json`` / ``images.url``: OpenAI Images API ``data[]``
  (https://platform.openai.com/docs/api-reference/images/object); Google's OpenAI-compatible
  images route answers the same way (https://ai.google.dev/gemini-api/docs/openai).
- ``native.inline_data``: Gemini ``candidates[].content.parts[].inlineData {mimeType, data}``
  (https://ai.google.dev/api/generate-content#candidate and
  https://ai.google.dev/gemini-api/docs/image-generation); relays' native routes may answer in
  snake_case ``inline_data {mime_type, data}``. Parts with ``thought: true`` are interim
  "thinking" images, so the answer is the last non-thought image.
- ``native.text.markdown`` / ``native.text.url``: Markdown or a URL in a native ``parts[].text``
  (relays that rewrite images into links; observed, no public spec).
- ``chat.images.image_url`` / ``chat.images.b64_json``: OpenRouter's
  ``choices[].message.images[].image_url.url`` data URL
  (https://openrouter.ai/docs/guides/overview/multimodal/image-generation) and relays'
  ``images[].b64_json`` variant.
- ``chat.content.markdown`` / ``chat.content.url``: ``![..](data:...)``, ``![..](https://...)``
  or a bare http(s) image URL in ``message.content`` (new-api / apiyi-style relays; observed).
- ``chat.content.parts``: ``message.content`` as a list of OpenAI content parts
  (https://platform.openai.com/docs/api-reference/chat/create) whose ``image_url.url`` may be a
  data URL, a URL or bare base64 without a ``data:`` prefix.

Refusals arrive as HTTP 200 without an image: Gemini ``promptFeedback.blockReason`` and
``finishReason`` (https://ai.google.dev/api/generate-content#FinishReason), OpenRouter
``native_finish_reason`` (https://openrouter.ai/docs/api-reference/overview), OpenAI
``message.refusal`` / ``finish_reason: content_filter``; text alone means "no image".

Only the shapes live here: base64 is decoded by :mod:`bot.providers.wire.b64`, URLs downloaded
by :mod:`bot.providers.wire.fetch`, and every image is verified by :func:`bot.images.verify_image`.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.domain import ImageData
from bot.errors import NoImage, Refused, UpstreamError
from bot.images import verify_image
from bot.offload import run_sync, waiting
from bot.providers.base import ProviderResult
from bot.providers.wire.b64 import decode_base64
from bot.providers.wire.clients import mib
from bot.providers.wire.fetch import Fetcher, UrlFetcher

REFUSAL_REASONS = frozenset({
    "SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT", "BLOCKLIST",
    "SPII", "RECITATION", "IMAGE_RECITATION", "CONTENT_FILTER",
})
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,[A-Za-z0-9+/=_-]+")
_URL = re.compile(r"https?://[^\s<>\"'`)\]]+")
_IMAGE_EXT = re.compile(r"\.(?:png|jpe?g|webp|gif)(?:[?#]|$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Found:
    """An image reference in a body, before decoding: a data URL, an http URL or base64.

    No type is kept: labels (``mimeType``, a data URL's, a download's) are never trusted; the
    bytes decide (bot/images.py).
    """

    source: str
    strict: bool = True  # a weak (bare, extension-less) URL that fails is skipped, not fatal


def native_output_indexes(parts: list[Any]) -> list[int]:
    """Indexes of every final (non-thought) inline image among native Gemini ``parts``."""
    return [i for i, part in enumerate(parts)
            if isinstance(part, dict) and not part.get("thought") and _inline(part) is not None]


async def extract(body: Mapping[str, Any], *, fetch: Fetcher | None = None) -> ProviderResult:
    """Find the images in any known response shape; raise Refused / NoImage / UpstreamError."""
    if "candidates" in body or "promptFeedback" in body:
        parser = _native
    elif isinstance(body.get("choices"), list):
        parser = _chat
    elif isinstance(body.get("data"), list):
        parser = _images_api
    else:
        raise UpstreamError(f"unrecognised response (keys: {', '.join(sorted(body))[:120]})")
    # Regex scans of a Markdown data URL can be megabytes long: keep them off the event loop.
    found, text, finish, shape, refusal = await run_sync(parser, body)
    images = await _materialise(found, fetch)
    if not images:
        if refusal is not None:
            raise Refused(reason=refusal, finish_reason=finish)
        raise NoImage(text)
    usage = {}
    for key in ("usage", "usageMetadata"):
        raw = body.get(key)
        if isinstance(raw, dict):
            usage.update({k: v for k, v in raw.items() if type(v) is int})
    return ProviderResult(images=tuple(images), text=text, finish_reason=finish, usage=usage,
                          shape=shape)


_Parsed = tuple[list[_Found], str, str, str, str | None]


def _native(body: Mapping[str, Any]) -> _Parsed:
    feedback = body.get("promptFeedback") or {}
    block = str(feedback.get("blockReason") or "")
    candidates = body.get("candidates") or []
    cand = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
    parts = [p for p in (cand.get("content") or {}).get("parts") or [] if isinstance(p, dict)]
    finish = str(cand.get("finishReason") or block)
    text = "\n".join(p["text"] for p in parts
                     if isinstance(p.get("text"), str) and not p.get("thought")).strip()
    indexes = native_output_indexes(parts)
    if indexes:
        # Several final images (e.g. "a storyboard of four panels") are all the answer.
        found = [_Found(_inline(parts[i]) or "") for i in indexes]
        shape = "native.inline_data"
    else:
        found, kind = _from_text(text)
        shape = f"native.text.{kind}"
    refusal = None
    if block or finish.upper() in REFUSAL_REASONS:
        words = feedback.get("blockReasonMessage") or cand.get("finishMessage") or text
        refusal = str(words or "")
    return found, text, finish, shape, refusal


def _chat(body: Mapping[str, Any]) -> _Parsed:
    choices = body["choices"]
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") or choice.get("delta") or {}
    finish = str(choice.get("finish_reason") or "")
    native = str(choice.get("native_finish_reason") or "")
    found: list[_Found] = []
    shape = ""
    for item in message.get("images") or []:
        if not isinstance(item, dict):
            continue
        url = item.get("image_url")
        url = url.get("url") if isinstance(url, dict) else url
        if isinstance(url, str) and url:
            found.append(_Found(url))
            shape = shape or "chat.images.image_url"
        elif isinstance(item.get("b64_json"), str):
            found.append(_Found(item["b64_json"]))
            shape = shape or "chat.images.b64_json"
    old = message.get("image")  # LiteLLM before message.images[]: {"url": ..., "detail": ...}
    if not found and isinstance(old, dict | str):
        url = old if isinstance(old, str) else (old.get("url") or old.get("image_url")
                                                  or old.get("b64_json"))
        url = url.get("url") if isinstance(url, dict) else url
        if isinstance(url, str) and url:
            found.append(_Found(url))
            shape = "chat.image"
    content = message.get("content")
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            # {"image_url": {"url"}}, {"url"}, or relays' {"type": "image", "image": url}.
            url = part.get("image_url") or part.get("url") or part.get("image")
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str) and url and not found:
                found.append(_Found(url))
                shape = "chat.content.parts"
    text = "\n".join(t for t in texts if t).strip()
    if not found:
        found, kind = _from_text(text)
        shape = f"chat.content.{kind}"
    refusal = message.get("refusal") or None
    if refusal is None and (native.upper() in REFUSAL_REASONS or finish == "content_filter"):
        refusal = text
    return found, text, native or finish, shape, None if refusal is None else str(refusal)


def _images_api(body: Mapping[str, Any]) -> _Parsed:
    found: list[_Found] = []
    shape, texts = "", []
    for item in body["data"]:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("b64_json"), str):
            found.append(_Found(item["b64_json"]))
            shape = shape or "images.b64_json"
        elif isinstance(item.get("url"), str):
            found.append(_Found(item["url"]))
            shape = shape or "images.url"
        if isinstance(item.get("revised_prompt"), str):
            texts.append(item["revised_prompt"])
    return found, "\n".join(texts), "", shape or "images.empty", None


def _from_text(text: str) -> tuple[list[_Found], str]:
    """Markdown images / data URLs first; else bare URLs (extension-less ones are weak)."""
    found = [_Found(m) for m in _MD_IMAGE.findall(text) if m.startswith(("data:", "http"))]
    found += [_Found(m) for m in _DATA_URL.findall(text) if not any(f.source == m for f in found)]
    if found:
        return found, "markdown"
    urls = _URL.findall(text)
    strong = [_Found(u) for u in urls if _IMAGE_EXT.search(u)]
    return strong or [_Found(u, strict=False) for u in urls], "url"


def _inline(part: Mapping[str, Any]) -> str | None:
    """The base64 of an inline part that says it is an image (or says nothing)."""
    blob = part.get("inlineData") or part.get("inline_data")
    if not isinstance(blob, dict) or not isinstance(blob.get("data"), str):
        return None
    mime = str(blob.get("mimeType") or blob.get("mime_type") or "")
    return blob["data"] if mime.startswith("image/") or not mime else None


async def _materialise(found: list[_Found], fetch: Fetcher | None) -> list[ImageData]:
    images = []
    # Inline images are bounded by the response cap; downloads add up, one cap per answer.
    budget, total = fetch.max_total if isinstance(fetch, UrlFetcher) else None, 0
    for item in found:
        try:
            images.append(await _load(item, fetch))
        except UpstreamError:
            if item.strict:
                raise
            continue
        total += images[-1].size_bytes
        if budget is not None and total > budget:
            raise UpstreamError(f"the images of one answer exceed {mib(budget)}; refused")
    return images


async def _load(item: _Found, fetch: Fetcher | None) -> ImageData:
    source = item.source.strip()
    if source.startswith(("http://", "https://")):
        if fetch is None:
            raise UpstreamError("the answer is an image URL but no downloader is configured")
        async with waiting():  # no parse slot held while downloading
            data, _ = await fetch(source)
    elif source.startswith("data:"):
        header, _, payload = source.partition(",")
        data = (await decode_base64(payload) if header.endswith(";base64")
                else urllib.parse.unquote_to_bytes(payload))
    else:  # a b64_json field, or a bare base64 "url" some relays send
        data = await decode_base64(source)
    return await verify_image(data)
