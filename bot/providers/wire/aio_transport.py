"""An httpx transport that moves the bytes with aiohttp: httpx's API and hooks, aiohttp's speed.

Why: an upstream answer is a 1.6 MB (1K) to 33 MB (4K) JSON body. httpx's own transport
(httpcore + h11 + anyio) reads it 64 KB at a time through a dozen Python layers, and its pool
walks every connection on each request event (O(n^2) for n calls at once); on loopback a 1.6 MB
answer cost 4.5 ms of CPU against aiohttp's 1.7 ms (bench: both clients, the same fake, fake
included). aiohttp parses HTTP in C and hands over whatever the socket had (up to 256 KB).

What stays httpx: the client, its event hooks (the byte cap and the delivery lease in
:mod:`bot.providers.wire.clients` wrap ``response.stream`` before the body is read), its exceptions (the
retry policy classifies ``httpx.TimeoutException`` / ``httpx.TransportError``), and the openai
SDK, which takes any ``httpx.AsyncClient`` (https://github.com/openai/openai-python#configuring-the-http-client;
its own ``DefaultAioHttpClient`` is this idea, https://github.com/karpetrosyan/httpx-aiohttp).
Proxies from the environment are still httpx's: it mounts its own proxy transports for them.
Bodies are passed through undecoded (``auto_decompress=False``): the cap decodes them, bounded.

The Telegram adapter's Bot API calls go through it too (python-telegram-bot's ``HTTPXRequest``
takes ``httpx_kwargs={"transport": ...}``, https://docs.python-telegram-bot.org/en/stable/
telegram.request.httpxrequest.html): with its 256-connection pool, httpcore polled every
connection's socket on each request, and a burst of 500 drafts spent half the event loop there
(first feedback p99 1.6-2.5 s in bench_e2e's burst; 0.5-1 s on aiohttp). httpx's four timeouts
keep their meaning: ``pool`` bounds the wait for one of ``limit`` connections and fails as
``httpx.PoolTimeout`` (nothing was sent: PTB says so), ``connect`` the TCP connect, ``read``
each wait for the answer's bytes; aiohttp has no ``write`` timeout, so the whole call is
bounded by the sum of the four instead (a stalled upload ends, later than httpx would end it).
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import cast

import aiohttp
import httpx

__all__ = ["AiohttpTransport"]


@contextmanager
def _as_httpx(request: httpx.Request) -> Iterator[None]:
    """aiohttp's failures as the httpx exceptions callers classify (timeouts first)."""
    try:
        yield
    except httpx.HTTPError:
        raise
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
    except (aiohttp.SocketTimeoutError, TimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except aiohttp.ClientResponseError as exc:  # a malformed status line or headers
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except (aiohttp.ClientError, OSError) as exc:  # payload errors, resets, broken pipes
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc


#: What a response streams once it is closed (httpx refuses to read a closed one anyway).
_CLOSED = httpx.ByteStream(b"")


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body as an httpx stream; closing gives the connection back."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request,
                 slot: asyncio.Semaphore | None) -> None:
        self._response = response
        self._request = request
        self._slot = slot
        #: The httpx response this is the body of (set once it exists; weak: no cycle of ours).
        self.owner: weakref.ref[httpx.Response] | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # Fully read: the connection goes back to the pool; otherwise it is closed.
        self._response.release()
        # httpx points its response's stream back at the response (Response.stream ->
        # BoundAsyncStream -> Response, https://github.com/encode/httpx/pull/3733), so every
        # answer waited for a full collection (10-20 s apart under load), and with it its
        # request: bench_e2e's 500 users held ~600 MB of sent photos that way. Closed, the
        # response needs no stream: letting go of it breaks the cycle for every client.
        response = self.owner() if self.owner is not None else None
        if response is not None:
            response.stream = _CLOSED
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.release()


async def _body(request: httpx.Request) -> bytes | AsyncIterator[bytes] | None:
    """A request's body for aiohttp: its bytes, or streamed when httpx streams it (a file).

    Joining a 1.5 MB multipart upload into one block for each Bot API call cost the bench's
    steady 500 users 350 MB of RSS (blocks that size come from malloc's heap once its mmap
    threshold has grown, and the heap keeps them); streamed, the chunks are httpx's 64 KB.
    """
    if isinstance(request.stream, httpx.ByteStream):  # bytes already (JSON, a prompt)
        return await request.aread() or None
    return aiter(cast(httpx.AsyncByteStream, request.stream))


def _timeout(parts: dict[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's per-call timeouts for aiohttp (see the module docstring for ``write``)."""
    given = [parts.get(k) for k in ("connect", "pool", "write", "read")]
    total = sum(v for v in given if v is not None) if None not in given else None
    return aiohttp.ClientTimeout(total=total, sock_connect=parts.get("connect"),
                                 sock_read=parts.get("read"))


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp session (made on first use, in the loop)."""

    def __init__(self, *, limit: int = 0, keepalive: float = 15.0,
                 verify: ssl.SSLContext | None = None) -> None:
        # 0: no cap (the job scheduler bounds upstream calls in flight). Else calls beyond it
        # wait here, not in aiohttp's connector, so that a timed-out wait is a PoolTimeout.
        self._slots = asyncio.Semaphore(limit) if limit > 0 else None
        self._keepalive = keepalive
        self._ssl = verify or httpx.create_ssl_context()  # httpx's trust store (certifi)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0,
                                             keepalive_timeout=self._keepalive, ssl=self._ssl)
            # Proxies and redirects are httpx's business (its mounts, follow_redirects).
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                                  auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """One request; the response body streams from aiohttp as it arrives."""
        timeout = request.extensions.get("timeout", {})
        body = await _body(request)
        slot = self._slots
        if slot is not None:
            try:
                async with asyncio.timeout(timeout.get("pool")):
                    await slot.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("no free connection in time", request=request) from None
        try:
            with _as_httpx(request):
                response = await self._client().request(
                    request.method, str(request.url), headers=list(request.headers.multi_items()),
                    data=body, allow_redirects=False, compress=None, timeout=_timeout(timeout))
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        stream = _Body(response, request, slot)
        answer = httpx.Response(response.status, headers=list(response.raw_headers),
                                stream=stream, request=request,
                                extensions={"http_version": b"HTTP/1.1",
                                            "reason_phrase": (response.reason or "").encode()})
        stream.owner = weakref.ref(answer)
        return answer

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        await asyncio.sleep(0)  # aiohttp: let the transports' close callbacks run
