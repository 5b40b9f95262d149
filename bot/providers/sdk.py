"""The base of the providers that speak through the openai SDK: ``openai-chat`` and ``openai-images``.

One client setup for both: the SDK's own retries are off (``max_retries=0``;
:mod:`bot.providers.retry` decides), its answers are capped while they stream (``http_client``:
:mod:`bot.providers.wire.clients`), image URLs in answers are fetched only from the route's host
or public addresses (:mod:`bot.providers.wire.fetch`), and every call is read raw
(``with_streaming_response``: the body is ours to read) so that every relay's shape reaches the
extractor and every failure its category (:mod:`bot.providers.wire.http_errors`), the key scrubbed from both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from typing import Any

import openai

from bot.errors import UpstreamError
from bot.offload import quick, waiting
from bot.providers.retry import RetryPolicy, TransientError
from bot.providers.wire.clients import cap_bytes, sdk_client
from bot.providers.wire.fetch import UrlFetcher
from bot.providers.wire.http_errors import read_json, wire_failures


class SdkProvider:
    """An openai SDK client on one route with its key, retry policy and image downloader."""

    def __init__(self, *, name: str, api_key: str, base_url: str | None, key_env: str | None,
                 policy: RetryPolicy | None, fetcher: UrlFetcher | None,
                 max_response_mb: int | None) -> None:
        self.name = name
        self._key = api_key
        self._key_env = key_env
        self._policy = policy or RetryPolicy()
        self._fetcher = fetcher or UrlFetcher(allow=(base_url,),
                                              max_total=cap_bytes(max_response_mb))
        # Answers are capped while they stream ([providers.NAME] max_response_mb).
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                                          http_client=sdk_client(max_response_mb))

    async def _call(self, call: Callable[[], AsyncContextManager[Any]],
                    seconds: float) -> dict[str, Any]:
        """Run one ``with_streaming_response`` SDK call; its JSON, or the failure category.

        Streamed so that the body is read under the caller's parse slot, as the native wire
        reads it (bot/offload.py: quick); a parse slot is not held while the upstream works.
        """
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with waiting():
                    raw = await stack.enter_async_context(call())
                resp = raw.http_response
                with wire_failures(seconds):
                    await quick(resp.aread())
                return await read_json(resp.status_code, resp.content, resp.headers,
                                       key_env=self._key_env, secret=self._key)
        except openai.APITimeoutError:
            raise TransientError(f"no answer within {seconds:.0f} s", timeout=True) from None
        except openai.APIConnectionError as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection error"
            raise TransientError(f"connection failed ({cause})") from None
        except openai.APIStatusError as exc:  # its body was read before it was raised
            resp = exc.response
            await read_json(resp.status_code, resp.content, resp.headers, key_env=self._key_env,
                            secret=self._key)
            raise UpstreamError(f"HTTP {resp.status_code}") from None  # read_json raised already

    async def probe(self) -> str:
        """One cheap call (list models) to check the endpoint and, where checked, the key."""
        return f"ok ({len(await self.list_models())} models listed)"

    async def list_models(self) -> list[str]:
        """Model ids the endpoint lists (``GET {base}/models``), asked once, without retries."""
        body = await RetryPolicy(max_retries=0).run(
            lambda: self._call(lambda: self._client.models.with_streaming_response.list(timeout=20.0),
                               20.0),
            job_seconds=20.0, what="probe")
        models = body.get("data")
        return [str(m.get("id", "")) for m in (models if isinstance(models, list) else [])
                if isinstance(m, dict)]

    async def aclose(self) -> None:
        """Close the SDK client and the image downloader."""
        await self._client.close()
        await self._fetcher.aclose()
