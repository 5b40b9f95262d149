"""Size-capped HTTP clients for upstream answers: bytes are counted while they stream.

Why 128 MiB by default (``[providers.NAME] max_response_mb``): the largest legitimate answer is a
few 4K images as base64 in JSON. A 4K PNG is about 20-25 MB; base64 adds a third (25 MB -> 33 MB);
native Gemini answers may carry interim "thought" images besides the final one, and relays may
send several images. Four such images are 4 x 33.3 MB = 133 MB, just under 128 MiB (134.2 MB);
the rest of the JSON is tiny. Anything larger is not an image answer: it is refused as soon as the
count passes the cap, so the body held never passes it; parsing and decoding an answer just
under the cap peaks near four times it (a 120 MiB answer: ~500 MiB RSS; a 512 MiB one is cut at
128 MiB with ~195 MiB RSS where it used to take ~2 GB).

How: a response event hook wraps ``response.stream`` before httpx reads the body (hooks run
before ``send`` reads a non-streamed body: https://www.python-httpx.org/advanced/event-hooks/),
so one mechanism covers httpx used directly (native Gemini) and the ``openai`` SDK, which takes
``http_client=httpx.AsyncClient(...)`` (https://github.com/openai/openai-python#configuring-the-http-client)
-- no SDK internals are touched, and environment proxies keep working. A declared
``Content-Length`` over the cap is refused before any byte is read. Compressed bodies are
decoded here with a bounded ``zlib`` output size (gzip and deflate, the only encodings asked
for), because the cap must bound what is held after decoding: a 128 KB gzip bomb inflates to
128 MB. The refusal is :class:`ResponseTooLarge`, an :class:`~bot.errors.UpstreamError`: never
retried (the same answer would come again), credits refunded.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import httpx

if TYPE_CHECKING:
    import httpx2

from bot.budget import answer_hook
from bot.errors import UpstreamError
from bot.providers.wire.aio_transport import AiohttpTransport

MIB = 1024 * 1024
DEFAULT_MAX_RESPONSE_MB = 128
#: Encodings the capped clients ask for; anything else an upstream sends anyway is refused.
ACCEPT_ENCODING = "gzip, deflate"
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}

#: Connection limits for upstream clients: concurrency is the scheduler's job, not the pool's.
UNPOOLED = httpx.Limits(max_connections=None, max_keepalive_connections=100)


class ResponseTooLarge(UpstreamError):
    """An upstream answer went past the configured byte cap; refused, not retried."""


class _CappedStream(httpx.AsyncByteStream):
    """Yields a response body (decompressed when encoded) and fails past ``cap`` bytes."""

    def __init__(self, inner: httpx.AsyncByteStream, cap: int, where: str,
                 wbits: int | None) -> None:
        self._inner = inner
        self._cap = cap
        self._where = where
        self._total = 0
        self._raw = 0
        self._zlib = zlib.decompressobj(wbits) if wbits is not None else None

    def _count(self, size: int) -> None:
        self._total += size
        if self._total > self._cap:
            self._refuse()

    def _refuse(self) -> None:
        raise ResponseTooLarge(f"answer from {self._where} is larger than the "
                               f"{mib(self._cap)} cap; refused")

    def _inflate(self, chunk: bytes) -> list[bytes]:
        assert self._zlib is not None
        out: list[bytes] = []
        data = chunk
        try:
            while data:
                # max_length bounds what one small chunk may inflate to before it is counted.
                piece = self._zlib.decompress(data, self._cap - self._total + 1)
                data = self._zlib.unconsumed_tail
                self._count(len(piece))
                out.append(piece)
                if not piece:
                    break
        except zlib.error:
            raise UpstreamError(f"answer from {self._where} does not decompress") from None
        return out

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._raw += len(chunk)
            if self._raw > self._cap:  # compressed bytes count too
                self._refuse()
            if self._zlib is None:
                self._count(len(chunk))
                yield chunk
                continue
            for piece in self._inflate(chunk):
                yield piece
        if self._zlib is not None:
            tail = self._zlib.flush()
            self._count(len(tail))
            if tail:
                yield tail

    async def aclose(self) -> None:
        # httpx 0.28's own wrapper points back at its Response (Response.stream ->
        # BoundAsyncStream -> Response: https://github.com/encode/httpx/pull/3733, open), so
        # every answer was a reference cycle and its body (1.6 MB at 1K, 27 MB at 4K) lived
        # until the cyclic GC ran: the 4K x 50 bench held 58 bodies (1.6 GB) at its peak.
        # Letting go of the inner stream once closed breaks the cycle (the aiohttp transport
        # breaks it too; this covers the guarded downloads' httpcore transport).
        inner, self._inner = self._inner, _CLOSED
        await inner.aclose()


_CLOSED = httpx.ByteStream(b"")


def cap_hook(max_bytes: int) -> Callable[[httpx.Response], Awaitable[None]]:
    """A response event hook that caps the body at ``max_bytes`` while it streams."""

    async def hook(response: httpx.Response) -> None:
        where = response.request.url.host or "?"
        declared = response.headers.get("content-length", "")
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if declared.isdigit() and int(declared) > max_bytes and encoding in ("", "identity"):
            await response.aclose()
            raise ResponseTooLarge(f"answer from {where} declares {mib(int(declared))}, "
                                   f"over the {mib(max_bytes)} cap; refused")
        wbits = None
        if encoding not in ("", "identity"):
            if encoding not in _WBITS:
                await response.aclose()
                raise UpstreamError(f"answer from {where} uses an unrequested encoding "
                                    f"({encoding[:20]})")
            wbits = _WBITS[encoding]
            # Decoded here, bounded; httpx must not decode it a second time.
            del response.headers["content-encoding"]
            response.headers.pop("content-length", None)
        if not isinstance(response.stream, httpx.AsyncByteStream):
            raise TypeError("capped clients are async only")
        response.stream = _CappedStream(response.stream, max_bytes, where, wbits)

    return hook


def capped_client(max_bytes: int, *, lease: bool = True, **options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every answer is capped at ``max_bytes`` while it streams."""
    headers = {"Accept-Encoding": ACCEPT_ENCODING, **options.pop("headers", {})}
    options.setdefault("limits", UNPOOLED)
    # aiohttp moves the bytes (aio_transport.py: 2.6 ms instead of 5.1 ms of CPU
    # for a 1.6 MB answer); a caller's own transport (the guarded image downloads) wins.
    options.setdefault("transport", AiohttpTransport())
    # The cap refuses first; then an API answer leases its declared bytes from the delivery
    # budget before its body is read (bot/budget.py). Image downloads don't: their bytes are
    # leased with the result's, once all of an answer's images are in.
    hooks = [cap_hook(max_bytes), *([answer_hook] if lease else [])]
    return httpx.AsyncClient(headers=headers, event_hooks={"response": hooks}, **options)


def mib(size: int) -> str:
    """``size`` bytes as a short MiB figure for messages and logs."""
    return f"{size / MIB:.0f} MiB" if size >= 10 * MIB else f"{size / MIB:.2f} MiB"


def cap_bytes(max_response_mb: int | None) -> int:
    """Bytes for a ``max_response_mb`` setting (``None``: the default)."""
    return (max_response_mb or DEFAULT_MAX_RESPONSE_MB) * MIB


def sdk_client(max_response_mb: int | None) -> httpx2.AsyncClient:
    """A capped client for ``openai.AsyncOpenAI(http_client=...)``; redirects not followed."""
    # The SDK's default timeouts (https://github.com/openai/openai-python, _constants.py): 600 s
    # to read, 5 s to connect; calls pass their own anyway. Unlike the SDK's own client,
    # redirects are not followed, as on the native Gemini wire: a relay's answer must not steer
    # the bot's keyed POST to another host; a 3xx is an upstream error. The SDK types
    # http_client as its httpx2 fork but takes an httpx.AsyncClient too (its constructor checks
    # for either), so one capping hook serves every wire.
    client = capped_client(cap_bytes(max_response_mb),
                           timeout=httpx.Timeout(600.0, connect=5.0), follow_redirects=False)
    return cast("httpx2.AsyncClient", client)
