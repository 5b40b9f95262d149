"""``openai-images``: the OpenAI Images API (``images.generate`` / ``images.edit``).

Serves gpt-image-1, dall-e-3 and Google's OpenAI-compatible images route
(https://ai.google.dev/gemini-api/docs/openai). Reference: https://platform.openai.com/docs/api-reference/images.
A request with references (or an edit of an earlier turn) goes to ``images.edit`` with the
images as multipart files (``image`` for one, ``image[]`` for several), the previous output
first; otherwise ``images.generate``. Answers are ``data[].b64_json`` or ``data[].url``.

Size and aspect: the Images API takes pixel sizes, not "1K/2K/4K". A ``WxH`` size passes through
as it is. Otherwise the aspect picks the orientation among the sizes the model documents:

| model       | square    | landscape (w/h > 1.2) | portrait (w/h < 0.83) |
| ----------- | --------- | --------------------- | --------------------- |
| dall-e-3    | 1024x1024 | 1792x1024             | 1024x1792             |
| dall-e-2    | 1024x1024 | 1024x1024             | 1024x1024             |
| other       | 1024x1024 | 1536x1024             | 1024x1536             |

With neither an aspect nor a ``WxH`` size, no size is sent (the server default). ``dall-e-*``
models are asked for ``response_format=b64_json``; gpt-image models always answer in base64
and reject the parameter.
"""

from __future__ import annotations

import re
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

from bot.budget import expecting
from bot.offload import parsing
from bot.providers.base import ProviderRequest, ProviderResult
from bot.providers.extract import extract
from bot.providers.retry import RetryPolicy
from bot.providers.sdk import SdkProvider
from bot.providers.wire.fetch import UrlFetcher

_PIXELS = re.compile(r"^\d{2,5}x\d{2,5}$")


def images_size(model_id: str, size: str | None, aspect: str | None) -> str | None:
    """The Images API ``size`` for a model, size and aspect (see the module table)."""
    if size and _PIXELS.match(size.lower()):
        return size.lower()
    if not aspect:
        return None
    try:
        width, height = (float(x) for x in aspect.split(":"))
        ratio = width / height
    except (ValueError, ZeroDivisionError):
        return None
    model = model_id.lower()
    if model.startswith("dall-e-2") or 0.83 <= ratio <= 1.2:
        return "1024x1024"
    if model.startswith("dall-e-3"):
        return "1792x1024" if ratio > 1 else "1024x1792"
    return "1536x1024" if ratio > 1 else "1024x1536"


class OpenAIImagesProvider(SdkProvider):
    """Generates with ``images.generate`` and edits with ``images.edit`` (references as files)."""

    def __init__(self, *, name: str, api_key: str, base_url: str | None = None,
                 key_env: str | None = None, policy: RetryPolicy | None = None,
                 fetcher: UrlFetcher | None = None, max_response_mb: int | None = None) -> None:
        super().__init__(name=name, api_key=api_key, base_url=base_url, key_env=key_env,
                         policy=policy, fetcher=fetcher, max_response_mb=max_response_mb)

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        """Generate or edit one image (retrying transient failures)."""
        previous = request.history[-1].outputs if request.history else ()
        images = (*previous, *request.references)
        files = [(img.name or f"image{i}.{img.extension}", img.data, img.mime)
                 for i, img in enumerate(images, 1)]
        params: dict[str, Any] = {"model": request.model_id, "prompt": request.prompt, "n": 1,
                                  "timeout": request.timeout}
        size = images_size(request.model_id, request.size, request.aspect)
        if size:
            params["size"] = size
        if request.model_id.lower().startswith("dall-e"):
            params["response_format"] = "b64_json"

        async def attempt() -> ProviderResult:
            return await self._attempt(params, files, request.timeout)

        with expecting(request.size):  # an answer's weight when it declares no length
            return await self._policy.run(attempt, job_seconds=request.timeout,
                                          what=f"{self.name} {request.model_id}",
                                          model=request.model_id)

    async def _attempt(self, params: dict[str, Any], files: list[tuple[str, bytes, str]],
                       seconds: float) -> ProviderResult:
        images = self._client.images.with_streaming_response

        def call() -> AbstractAsyncContextManager[Any]:
            if files:
                return images.edit(image=cast(Any, files if len(files) > 1 else files[0]),
                                   **params)
            return images.generate(**params)

        async with parsing():  # lent out while the call waits (SdkProvider._call)
            body = await self._call(call, seconds)
            return await extract(body, fetch=self._fetcher)
