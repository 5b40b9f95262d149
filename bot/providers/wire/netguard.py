"""Where image URLs from answers may be fetched: the route's own origin or public addresses only.

A relay or a model can put any URL in an answer; fetched blindly, it makes the bot request
loopback services, the private network or a cloud metadata endpoint (169.254.169.254). So
:class:`GuardedTransport` checks every connection the fetcher makes, each redirect hop included
(every hop is a new request through the transport):

- The route's own origin (its ``base_url`` host and port) is trusted as it is, even on loopback:
  that is where a local relay and the tests' fake upstream serve their images.
- Any other host is resolved first (``getaddrinfo`` in the loop's executor) and refused when ANY of
  its addresses is not public: private, loopback, link-local, reserved, multicast, unspecified,
  shared (100.64/10), and the IPv4 inside IPv4-mapped, 6to4 and NAT64 IPv6 addresses
  (https://docs.python.org/3/library/ipaddress.html). Nothing is connected before that.
- The connection then goes to the checked address itself (the URL's host is replaced by the IP),
  so a DNS answer that changes between check and connect (rebinding) is never used.

Why pin the IP with the ``sni_hostname`` request extension rather than a custom resolver in the
socket layer: httpx exposes no public hook for its connection backend, and this one keeps TLS
verification correct without touching internals. The ``Host`` header keeps the real name, and
httpcore passes ``sni_hostname`` as ``server_hostname`` to ``SSLContext.wrap_socket``, so the
certificate is still verified against the URL's host name, not the IP
(https://www.python-httpx.org/advanced/extensions/, https://www.encode.io/httpcore/extensions/,
``sni_hostname``). Pinned connections are not
kept alive: a pooled connection is keyed by IP, and must never carry a request for another name
than the one its certificate was checked for. Environment proxies are not used for these
downloads: a proxy would resolve names itself, after our check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable

import httpx

from bot.errors import UpstreamError
from bot.providers.wire.clients import UNPOOLED

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class BlockedAddress(UpstreamError):
    """An image URL points at an address the bot must not connect to."""


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (without blocking the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(ip: IPAddress) -> bool:
    """True for a globally routable unicast address (IPv4 embedded in IPv6 is checked too)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local
                                 or ip.is_reserved or ip.is_multicast or ip.is_unspecified)


def origin(url: str | httpx.URL) -> tuple[str, int]:
    """``(host, port)`` of a URL (the host as sent: ASCII, IDNA-encoded), port by scheme."""
    parsed = httpx.URL(url) if isinstance(url, str) else url
    host = parsed.raw_host.decode("ascii").lower()
    return host, parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 0)


class GuardedTransport(httpx.AsyncBaseTransport):
    """Connects only to the allowed origins or to checked public addresses (see module doc)."""

    def __init__(self, allow: Iterable[str] = (), *, resolve: Resolver = system_resolve,
                 public: Callable[[IPAddress], bool] = is_public,
                 verify: ssl.SSLContext | bool = True) -> None:
        self._allow = {origin(url) for url in allow if url}
        self._resolve = resolve
        self._public = public
        # A transport never reads proxy variables (only a client does, and only without a
        # transport of its own); SSL_CERT_FILE / SSL_CERT_DIR still apply.
        self._direct = httpx.AsyncHTTPTransport(limits=UNPOOLED, verify=verify)
        self._pinned = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0), verify=verify)

    async def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses to connect to for ``host``; BlockedAddress if any is not public."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            found = [str(literal)]
        else:
            try:
                found = await self._resolve(host, port)
            except OSError:
                raise UpstreamError(f"image host {host[:60]} does not resolve") from None
        checked = [ipaddress.ip_address(a.split("%")[0]) for a in found]
        if not checked:
            raise UpstreamError(f"image host {host[:60]} does not resolve")
        for ip in checked:
            if not self._public(ip):
                raise BlockedAddress(f"refusing to fetch an image from {host[:60]} "
                                     f"({ip} is not a public address)")
        return [str(ip) for ip in checked]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` directly to an allowed origin, else pinned to a checked address."""
        url = request.url
        host, port = origin(url)
        if (host, port) in self._allow:
            return await self._direct.handle_async_request(request)
        last: httpx.ConnectError | None = None
        for ip in await self.addresses(host, port):
            extensions = dict(request.extensions)
            if url.scheme == "https":
                extensions["sni_hostname"] = host
            # The Host header was set from the original URL when the request was built.
            pinned = httpx.Request(request.method, url.copy_with(host=ip),
                                   headers=request.headers, stream=request.stream,
                                   extensions=extensions)
            try:
                return await self._pinned.handle_async_request(pinned)
            except httpx.ConnectError as exc:  # try the next checked address
                last = exc
        assert last is not None
        raise last

    async def aclose(self) -> None:
        """Close both connection pools."""
        await self._direct.aclose()
        await self._pinned.aclose()
