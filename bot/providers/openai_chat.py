"""``openai-chat``: image models behind OpenAI-compatible chat completions (relays).

Wire format, as the relays document it:

- OpenRouter (https://openrouter.ai/docs/guides/overview/multimodal/image-generation): top-level
  ``modalities: ["image", "text"]`` and ``image_config {aspect_ratio, image_size}``; images come
  back in ``choices[].message.images[].image_url.url``; ``native_finish_reason`` carries Gemini's
  own finish reason (IMAGE_SAFETY ...).
- new-api / apiyi-style relays read ``google.image_config`` (the same keys) and often answer with
  Markdown ``![..](data:...)`` or an image URL in ``message.content``.
- References are OpenAI content parts (https://platform.openai.com/docs/guides/images-vision):
  the text first, then one ``image_url`` part per image as a ``data:`` URL; with several images
  the text names them "image 1..N" in order. An edit sends the previous output back as the first
  ``image_url`` of the new user message (never as Markdown), after the earlier prompts as text.

The client, its caps, the raw calls and the failure categories are :mod:`bot.providers.sdk`'s.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any, cast

from bot.budget import expecting
from bot.domain import ImageData
from bot.offload import parsing
from bot.providers.base import HistoryTurn, ProviderRequest, ProviderResult
from bot.providers.extract import extract
from bot.providers.retry import RetryPolicy
from bot.providers.routes import ROUTES, Route
from bot.providers.sdk import SdkProvider
from bot.providers.text import TextRequest, chat_text, chat_text_messages
from bot.providers.wire.b64 import encode_base64
from bot.providers.wire.fetch import Fetcher, UrlFetcher

log = logging.getLogger(__name__)


class OpenAIChatProvider(SdkProvider):
    """Generates and edits images through ``chat.completions`` on an OpenAI-compatible relay."""

    def __init__(self, *, name: str, base_url: str, api_key: str, key_env: str | None = None,
                 policy: RetryPolicy | None = None, fetcher: UrlFetcher | None = None,
                 route: Route = ROUTES["openai-chat"], max_response_mb: int | None = None) -> None:
        super().__init__(name=name, api_key=api_key, base_url=base_url, key_env=key_env,
                         policy=policy, fetcher=fetcher, max_response_mb=max_response_mb)
        self.route = route

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        """Send one chat completion (retrying transient failures) and extract its image."""
        messages = await build_messages(request)
        extra = extra_body(request, self.route)
        request = replace(request, model_id=self.route.model_id(request.model_id))

        async def attempt() -> ProviderResult:
            return await self._attempt(request, messages, extra, self._fetcher)

        with expecting(request.size):  # an answer's weight when it declares no length
            result = await self._policy.run(attempt, job_seconds=request.timeout,
                                            what=f"{self.name} {request.model_id}",
                                            model=request.model_id)
        state = json.dumps({"text": result.text}) if result.text else None
        return replace(result, provider_state=state)

    async def _attempt(self, request: ProviderRequest, messages: list[dict[str, Any]],
                       extra: dict[str, Any], fetch: Fetcher) -> ProviderResult:
        async with parsing():  # lent out while the call waits (SdkProvider._call)
            body = await self._call(
                lambda: self._client.chat.completions.with_streaming_response.create(
                    model=request.model_id, messages=cast(Any, messages), extra_body=extra,
                    timeout=request.timeout),
                request.timeout)
            return await extract(body, fetch=fetch)

    async def text(self, request: TextRequest) -> str:
        """Text mode (/describe): one chat completion, its words (bot/providers/text.py)."""
        messages = await chat_text_messages(request)
        model = self.route.model_id(request.model_id)

        async def attempt() -> str:
            return chat_text(await self._call(
                lambda: self._client.chat.completions.with_streaming_response.create(
                    model=model, messages=cast(Any, messages), timeout=request.timeout),
                request.timeout))

        return await self._policy.run(attempt, job_seconds=request.timeout,
                                      what=f"{self.name} {model}", model=model)


def extra_body(request: ProviderRequest, route: Route = ROUTES["openai-chat"]) -> dict[str, Any]:
    """Modalities and image/thinking/search options where ``route`` reads them (routes.py)."""
    config: dict[str, str] = {}
    if request.aspect:
        config["aspect_ratio"] = request.aspect
    if request.size and request.send_size:
        config["image_size"] = route.size(request.size)
    extra: dict[str, Any] = {"modalities": ["image", "text"]}
    google: dict[str, Any] = {}
    if config:
        google["image_config"] = dict(config)
    if request.thinking:
        google["thinking_config"] = {"thinking_level": request.thinking}
    if route.dialect in ("openrouter", "litellm", "generic") and config:
        extra["image_config"] = dict(config)
    if route.dialect == "openrouter":
        if request.thinking:
            extra["reasoning"] = {"effort": request.thinking}
        if request.search:
            extra["plugins"] = [{"id": "web"}]
    elif route.dialect == "litellm":
        if request.thinking:
            extra["reasoning_effort"] = request.thinking
        if request.search:
            extra["tools"] = [{"googleSearch": {}}]
    if route.dialect in ("new-api", "generic") and google:
        # A JSON key literally named "extra_body": the openai SDK would flatten ours into the root.
        extra["extra_body"] = {"google": google}
    if route.dialect == "generic" and google:
        extra["google"] = google  # older one-api builds read it at the root
    return extra


async def build_messages(request: ProviderRequest) -> list[dict[str, Any]]:
    """Earlier turns as text, then one user message: text first, then the images."""
    messages: list[dict[str, Any]] = []
    for turn in request.history:
        messages.append({"role": "user", "content": turn.prompt})
        messages.append({"role": "assistant", "content": _assistant_text(turn)})
    previous = request.history[-1].outputs if request.history else ()
    images = (*previous, *request.references)
    text = request.prompt
    if len(images) > 1:
        labels = [f"image {i}" + (" (the image to edit)" if i <= len(previous) else "")
                  for i in range(1, len(images) + 1)]
        text = f"{text}\n\n(Attached in order: {', '.join(labels)}.)"
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    content += [{"type": "image_url", "image_url": {"url": await data_url(img)}} for img in images]
    messages.append({"role": "user", "content": content})
    return messages


async def data_url(image: ImageData) -> str:
    """``data:MIME;base64,...`` for an image (encoded off the event loop when large)."""
    return f"data:{image.mime};base64,{await encode_base64(image.data)}"


def _assistant_text(turn: HistoryTurn) -> str:
    """What the model said on an earlier turn (from its provider state), else a neutral note."""
    try:
        state = json.loads(turn.provider_state) if turn.provider_state else {}
    except ValueError:
        state = {}
    text = state.get("text") if isinstance(state, dict) else None
    if not text and isinstance(state, dict) and isinstance(state.get("parts"), list):
        text = "\n".join(str(p["text"]) for p in state["parts"]
                         if isinstance(p, dict) and "text" in p and not p.get("thought"))
    count = len(turn.outputs)
    return str(text or "").strip() or f"({count} image{'s' if count != 1 else ''} generated)"
