"""Image URLs in answers downloaded: http(s) only, capped while streaming, a timeout, and only
from the route's own origin or public addresses (each redirect hop checked: :mod:`.netguard`)."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable

import httpx

from bot.errors import UpstreamError
from bot.providers.wire.clients import ResponseTooLarge, cap_bytes, capped_client
from bot.providers.wire.netguard import GuardedTransport

#: What the extractor is handed to download an image URL: ``(bytes, content type)``.
Fetcher = Callable[[str], Awaitable[tuple[bytes, str]]]

MAX_FETCH_BYTES = 50 * 1024 * 1024


class UrlFetcher:
    """Downloads image URLs: http(s), size caps while streaming, a timeout, checked addresses."""

    # Only the route's own origin (``allow``: its base URL) or public addresses are connected
    # to, each redirect hop included (netguard.py). A ``client`` passed in is used
    # as it is (tests): it brings its own transport. ``max_bytes`` caps one download and
    # ``max_total`` all the images of one answer (the route's max_response_mb): URLs add up.

    def __init__(self, client: httpx.AsyncClient | None = None, *,
                 max_bytes: int = MAX_FETCH_BYTES, timeout: float = 30.0,
                 max_redirects: int = 3, allow: tuple[str | None, ...] = (),
                 max_total: int = cap_bytes(None)) -> None:
        self._own = client is None
        self._client = client or capped_client(
            max_bytes, lease=False, follow_redirects=False,
            transport=GuardedTransport(a for a in allow if a))
        self.max_bytes = max_bytes
        self.max_total = max_total
        self.timeout = timeout
        self.max_redirects = max_redirects

    async def __call__(self, url: str) -> tuple[bytes, str]:
        """Return ``(bytes, content type)`` of ``url``; raise UpstreamError on any failure."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._get(url)
        except TimeoutError:
            raise UpstreamError(f"image download from {_host(url)} timed out") from None
        except ResponseTooLarge:
            raise UpstreamError(f"image at {_host(url)} exceeds the download cap") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"image download from {_host(url)} failed: {type(exc).__name__}") from None

    async def _get(self, url: str) -> tuple[bytes, str]:
        for _ in range(self.max_redirects + 1):
            if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
                raise UpstreamError(f"refusing to fetch a non-http(s) image URL ({url[:40]})")
            async with self._client.stream("GET", url) as resp:
                if resp.is_redirect and "location" in resp.headers:
                    url = urllib.parse.urljoin(url, resp.headers["location"])
                    continue
                if resp.status_code != 200:
                    raise UpstreamError(f"image URL on {_host(url)} answered {resp.status_code}")
                ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype.startswith(("text/", "application/json")):
                    raise UpstreamError(f"URL on {_host(url)} is {ctype}, not an image")
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise UpstreamError(f"image at {_host(url)} is larger than the download cap")
                chunks, total = [], 0
                async for chunk in resp.aiter_bytes():
                    total += len(chunk)
                    if total > self.max_bytes:
                        raise UpstreamError(f"image at {_host(url)} exceeds the download cap")
                    chunks.append(chunk)
                return b"".join(chunks), ctype
        raise UpstreamError(f"too many redirects fetching an image from {_host(url)}")

    async def aclose(self) -> None:
        """Close the HTTP client if this fetcher created it."""
        if self._own:
            await self._client.aclose()


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or "?"
