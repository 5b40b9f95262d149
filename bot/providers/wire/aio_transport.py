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
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

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


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body as an httpx stream; closing gives the connection back."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # Fully read: the connection goes back to the pool; otherwise it is closed.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp session (made on first use, in the loop)."""

    def __init__(self, *, limit: int = 0, keepalive: float = 15.0,
                 verify: ssl.SSLContext | None = None) -> None:
        self._limit = limit  # 0: no cap; the job scheduler bounds calls in flight
        self._keepalive = keepalive
        self._ssl = verify or httpx.create_ssl_context()  # httpx's trust store (certifi)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=0,
                                             keepalive_timeout=self._keepalive, ssl=self._ssl)
            # Proxies and redirects are httpx's business (its mounts, follow_redirects).
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                                  auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """One request; the response body streams from aiohttp as it arrives."""
        timeout = request.extensions.get("timeout", {})
        body: bytes | None = await request.aread() or None
        with _as_httpx(request):
            response = await self._client().request(
                request.method, str(request.url), headers=list(request.headers.multi_items()),
                data=body, allow_redirects=False, compress=None,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout.get("connect"),
                                              sock_read=timeout.get("read")),
            )
        return httpx.Response(response.status, headers=list(response.raw_headers),
                              stream=_Body(response, request), request=request,
                              extensions={"http_version": b"HTTP/1.1",
                                          "reason_phrase": (response.reason or "").encode()})

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        await asyncio.sleep(0)  # aiohttp: let the transports' close callbacks run
