"""Who is asking and by which name: the Host allow-list, trusted proxies, and visitor pools.

A browser sends the name it resolved in ``Host``; answering only our own names defeats DNS
rebinding (a page on ``evil.example`` re-pointed at 127.0.0.1 still says ``Host: evil.example``).
421 Misdirected Request is what an origin sends "to reject a target URI that does not match an
origin for which the server has been configured" (RFC 9110 section 15.5.20,
https://www.rfc-editor.org/rfc/rfc9110#section-15.5.20).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from bot.api import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("", "0.0.0.0", "::")
#: IPv6 hosts get a /64 each (RFC 6177), so one visitor pool covers one subscriber's prefix.
V6_POOL_PREFIX = 64


def host_name(host: str | None) -> str | None:
    """The name in a Host value, lower-cased, without port, brackets or a trailing dot."""
    if not host:
        return None
    try:
        name = urlsplit(f"//{host.strip()}").hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None


def parse_address(text: str | None) -> IPAddress | None:
    """An IP address (IPv4-mapped IPv6 unwrapped), or None for anything else."""
    try:
        address = ipaddress.ip_address((text or "").strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    address = parse_address(host)
    return host == "localhost" or (address is not None and address.is_loopback)


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """The console's view of the network: which names it answers and whom it believes."""

    hosts: frozenset[str]
    proxies: tuple[Network, ...]
    public_origin: str | None
    public_host: str | None
    #: Reachable by others (not loopback only): anonymous visitors are pooled by address.
    exposed: bool

    @classmethod
    def from_settings(cls, settings: Settings, listen_host: str) -> NetworkPolicy:
        """Built from ``[web]``: loopback names, the listen address, public_url, allowed_hosts."""
        web_cfg = settings.web
        hosts = set(LOOPBACK_NAMES)
        if listen_host not in WILDCARDS:
            hosts.add(host_name(listen_host if ":" not in listen_host else f"[{listen_host}]")
                      or listen_host)
        public_host = host_name(urlsplit(web_cfg.public_url).netloc) if web_cfg.public_url else None
        if public_host:
            hosts.add(public_host)
        hosts.update(h for h in map(host_name, web_cfg.allowed_hosts) if h)
        proxies = tuple(ipaddress.ip_network(p, strict=False) for p in web_cfg.trusted_proxies)
        exposed = (not is_loopback(listen_host) or bool(proxies)
                   or (public_host is not None and not is_loopback(public_host)))
        origin = _origin(web_cfg.public_url) if web_cfg.public_url else None
        return cls(frozenset(hosts), proxies, origin, public_host, exposed)

    def trusted(self, peer: str | None) -> bool:
        """True when the TCP peer is one of ``[web] trusted_proxies``."""
        address = parse_address(peer)
        return address is not None and any(address in net for net in self.proxies)

    def forwarded(self, request: web.Request) -> web.Request:
        """The request as the client sent it to the proxy, when the peer is a trusted proxy.

        The client is the rightmost X-Forwarded-For entry that is not itself a trusted proxy:
        nginx's ``$proxy_add_x_forwarded_for`` appends the peer to whatever the client sent
        (https://nginx.org/en/docs/http/ngx_http_proxy_module.html#var_proxy_add_x_forwarded_for),
        so entries to its left are the client's own say.
        """
        if not self.proxies or not self.trusted(request.remote):
            return request
        remote = request.remote or ""
        chain = [p.strip() for p in ",".join(request.headers.getall("X-Forwarded-For", []))
                 .split(",") if p.strip()]
        for hop in reversed(chain):
            address = parse_address(hop)
            if address is None:
                break
            remote = str(address)
            if not self.trusted(hop):
                break
        proto = _last(request.headers.get("X-Forwarded-Proto")).lower()
        host = _last(request.headers.get("X-Forwarded-Host")) or request.host
        # One clone: each clone starts again from the transport's values.
        return request.clone(remote=remote, host=host,
                             scheme=proto if proto in ("http", "https") else request.scheme)

    def host_ok(self, request: web.Request) -> bool:
        """True when the request names one of our hosts."""
        return host_name(request.host) in self.hosts

    def origin(self, request: web.Request) -> str:
        """The Origin our own pages send: public_url's for its host, else this request's."""
        if self.public_origin and host_name(request.host) == self.public_host:
            return self.public_origin
        return f"{request.scheme}://{request.host}"

    def secure(self, request: web.Request) -> bool:
        """Whether cookies get ``Secure``: an https request, or an https public_url."""
        return request.secure or bool(self.public_origin and self.public_origin.startswith(
            "https:") and host_name(request.host) == self.public_host)


def _origin(url: str) -> str:
    """An origin as browsers serialize it: lower-case, default port left out (RFC 6454 6.1)."""
    parts = urlsplit(url)
    scheme, host, port = parts.scheme.lower(), parts.hostname or "", parts.port
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _last(value: str | None) -> str:
    """The last comma-separated element (the one the nearest proxy wrote)."""
    return (value or "").rsplit(",", 1)[-1].strip()


def pool_network(address: IPAddress) -> Network:
    """The block one visitor pool covers: the address itself (IPv4) or its /64 (IPv6)."""
    prefix = 32 if address.version == 4 else V6_POOL_PREFIX
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


def pool_id(secret: bytes, remote: str | None) -> str:
    """A stable, pseudonymous visitor id for an address's pool (no address is stored)."""
    address = parse_address(remote)
    block = str(pool_network(address)) if address is not None else "unknown"
    digest = hmac.new(secret, f"pool\0{block}".encode(), hashlib.sha256).digest()
    return "ip-" + base64.urlsafe_b64encode(digest[:12]).decode()
