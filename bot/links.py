"""References by URL: an image already on Discord's CDN goes upstream as its URL, not re-uploaded.

Gemini's generateContent accepts "any publicly accessible URL" and pre-signed URLs for input
files since 2026-01-12 (https://blog.google/innovation-and-ai/technology/developers-tools/
gemini-api-new-file-limits; as a ``file_data {mime_type, file_uri}`` part,
https://ai.google.dev/gemini-api/docs/file-input-methods): "The Gemini API securely fetches the
content during processing, eliminating the need to download content to your backend just to
forward it to the API". The same update raised inline data from 20 MB to 100 MB; a URL still
saves sending the bytes again as base64 (a third more) on every call.

The core decides what may go by URL (:func:`image_link`): https only, Discord's CDN hosts only
(its attachment URLs are signed and expire; a Telegram file URL carries the bot token in its
path and never qualifies), a declared image type Gemini reads, and the declared size within
``[limits] max_input_mb``. Anything else is downloaded by the adapter as before.

Per job (:func:`prepared`): when every route that may serve it fetches URLs (the native Gemini
route on Google's own hosts: ``accepts_links``), the URLs go upstream and the bytes are fetched
meanwhile, off the job's critical path, because the turn keeps its inputs (a reroll or a later
edit replays them inline, by when the URL may have expired); if they cannot be fetched the job
fails and is refunded, rather than keeping a turn whose reroll would quietly lose a reference.
Otherwise (another route, or a fallback route that cannot fetch, or a batch) the bytes are
fetched first and go inline, like any reference.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from bot.config_sections import LimitsSection
from bot.domain import ImageData, ImageLink, ImageRequest
from bot.errors import InputTooLarge, NotFound, UpstreamError
from bot.providers.wire.fetch import UrlFetcher

log = logging.getLogger(__name__)
#: Discord serves attachments from cdn.discordapp.com and proxies images (link previews, resized
#: attachments) from media.discordapp.net.
LINK_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
#: Image types Gemini takes as input (https://ai.google.dev/gemini-api/docs/image-understanding).
LINK_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
Fetch = Callable[[str, int], Awaitable[bytes]]
#: images.prepare_reference: validates and cleans a reference (type, bombs, size, metadata).
Prepare = Callable[..., Awaitable[ImageData]]


def image_link(url: str, mime: str, size: int | None, name: str = "", *,
               max_bytes: int) -> ImageLink | None:
    """``url`` as a reference the upstream may fetch, or None when it must be downloaded.

    Raises InputTooLarge when the declared size is over ``max_bytes`` (as a download would).
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    mime = mime.split(";")[0].strip().lower()
    if (parts.scheme != "https" or (parts.hostname or "").lower() not in LINK_HOSTS
            or parts.username or parts.password or port not in (None, 443)
            or mime not in LINK_TYPES or not size or size <= 0):
        return None
    if size > max_bytes:
        raise InputTooLarge(size / 1e6, max_bytes / 1e6)
    return ImageLink(url=url, mime=mime, size=size, name=name)


def fetches_links(providers: Mapping[str, object], routes: Sequence[str]) -> bool:
    """Whether every route may be sent URLs (a fallback route that cannot would get none)."""
    return bool(routes) and all(getattr(providers.get(r), "accepts_links", False)
                                for r in routes)


async def fetch(url: str, max_bytes: int) -> bytes:
    """The bytes at ``url`` (public addresses only, capped while streaming), else NotFound."""
    fetcher = UrlFetcher(max_bytes=max_bytes)
    try:
        data, _ = await fetcher(url)
    except UpstreamError as exc:
        log.info("reference by URL not fetched: %s", exc)
        raise NotFound("reference download failed") from exc
    finally:
        await fetcher.aclose()
    return data


@dataclass
class Linked:
    """A job's references by URL: the URLs to send, and their bytes once fetched."""

    urls: tuple[ImageLink, ...] = ()
    task: asyncio.Task[list[ImageData]] | None = None

    async def stored(self) -> tuple[ImageData, ...]:
        """The prepared bytes of ``urls`` (fetched while the upstream worked)."""
        return () if self.task is None else tuple(await self.task)

    def cancel(self) -> None:
        """The job ended without storing a turn: stop fetching."""
        if self.task is not None:
            self.task.cancel()


#: A job without references by URL.
NO_LINKS = Linked()


async def prepared(request: ImageRequest, prepare: Prepare, limits: LimitsSection, *,
                   by_url: bool, get: Fetch | None = None) -> tuple[list[ImageData], Linked]:
    """The references to send inline, and the ones that go by URL (``by_url``) if any."""
    cap = int(limits.max_input_mb * 1_000_000)
    get = get or fetch

    async def clean(image: ImageData) -> ImageData:
        return await prepare(image.data, max_input_bytes=cap, name=image.name,
                             max_output_bytes=int(limits.reference_max_mb * 1_000_000))

    refs = list(await asyncio.gather(*(clean(r) for r in request.references)))
    if not request.links:
        return refs, NO_LINKS

    async def download() -> list[ImageData]:
        raw = await asyncio.gather(*(get(link.url, cap) for link in request.links))
        return list(await asyncio.gather(*(
            clean(ImageData(data, link.mime, name=link.name))
            for data, link in zip(raw, request.links, strict=True))))

    if not by_url:
        return [*refs, *await download()], NO_LINKS
    task = asyncio.create_task(download(), name="reference-links")
    task.add_done_callback(_quiet)
    return refs, Linked(request.links, task)


def _quiet(task: asyncio.Task[list[ImageData]]) -> None:
    """A fetch nobody awaited (the job failed first) must not warn 'never retrieved'."""
    if not task.cancelled() and task.exception() is not None:
        log.info("reference by URL not stored: %s", task.exception())
