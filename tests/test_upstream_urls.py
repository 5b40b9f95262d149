"""Image URLs in answers may not point inward (issue 12, item 8).

Only the route's own origin or public addresses are fetched; every other address is refused
before any connection: names are resolved and every address checked, at every redirect, and the
connection goes to the checked address (so DNS rebinding cannot win) with TLS still verified for
the name. A loopback listener and a process-wide connect tripwire prove nothing was connected.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.errors import UpstreamError
from bot.providers.wire.fetch import UrlFetcher
from bot.providers.wire.netguard import BlockedAddress, GuardedTransport, is_public
from tests.fake_hostile import (
    REQUEST,
    ROUTE,
    WIRES,
    Build,
    ConnectionRecorder,
    connects_fixture,  # noqa: F401
    make_fixture,  # noqa: F401
    recorder_fixture,  # noqa: F401
    tls_pair,
    url_answer,
)
from tests.fake_upstream import (
    FakeUpstream,
    Reply,
    Sleeps,
    fake_upstream_fixture,  # noqa: F401
    images_body,
    png,
    sleeps_fixture,  # noqa: F401
)

# --- item 8: image URLs may only point at the route's own origin or public addresses ------------


@pytest.mark.parametrize("where", [
    "http://127.0.0.2:{port}/x.png",  # loopback, another host than the route's
    "http://localhost:{port}/x.png",  # a name that resolves to loopback
    "http://[::ffff:127.0.0.2]:{port}/x.png",  # IPv4-mapped IPv6 loopback
    "http://2130706434:{port}/x.png",  # 127.0.0.2 spelled as one integer
    "http://10.1.2.3:{port}/x.png",  # private
    "http://169.254.169.254/latest/meta-data/x.png",  # cloud metadata, link-local
    "http://0.0.0.0:{port}/x.png",  # unspecified
])
@pytest.mark.parametrize("wire", WIRES)
async def test_inward_image_urls_are_refused_before_connecting(
        wire: str, where: str, make: Build, fake_upstream: FakeUpstream,
        recorder: ConnectionRecorder, connects: list[Any]) -> None:
    # The listener also answers on 127.0.0.1 at the same port when the name is localhost.
    extra = await ConnectionRecorder("127.0.0.1").start()
    try:
        url = where.format(port=recorder.port)
        if "localhost" in where:
            url = where.format(port=extra.port)
        fake_upstream.push(ROUTE[wire], Reply(json=url_answer(wire, url)))
        with pytest.raises(BlockedAddress, match="not a public address"):
            await make(wire).generate(REQUEST)
        assert recorder.connections == 0 and extra.connections == 0
        assert set(connects) == {"127.0.0.1"}  # only the route's own API call
        assert len(fake_upstream.seen(ROUTE[wire])) == 1
    finally:
        await extra.stop()


async def test_a_redirect_to_loopback_is_refused_before_connecting(
        make: Build, fake_upstream: FakeUpstream, recorder: ConnectionRecorder,
        connects: list[Any]) -> None:
    hop = fake_upstream.serve("hop.png", Reply(status=302, body=b"",
                                               headers={"Location": recorder.url()}))
    fake_upstream.push("images.generate", Reply(json=images_body({"url": hop})))
    with pytest.raises(BlockedAddress):
        await make("images").generate(REQUEST)
    assert recorder.connections == 0 and set(connects) == {"127.0.0.1"}
    assert [s.path for s in fake_upstream.seen("files")] == ["/files/hop.png"]


@pytest.mark.parametrize("wire", WIRES)
async def test_an_api_answer_cannot_redirect_the_keyed_call_elsewhere(
        wire: str, make: Build, fake_upstream: FakeUpstream, recorder: ConnectionRecorder,
        sleeps: Sleeps) -> None:
    fake_upstream.push(ROUTE[wire], Reply(status=307, body=b"",
                                          headers={"Location": recorder.url("/v1/steal")}))
    with pytest.raises(UpstreamError, match="307"):
        await make(wire).generate(REQUEST)
    assert recorder.connections == 0 and sleeps == []


@pytest.mark.parametrize("wire", WIRES)
async def test_an_image_on_the_routes_own_host_works(
        wire: str, make: Build, fake_upstream: FakeUpstream) -> None:
    url = fake_upstream.serve("own.png", png(color="green"))
    fake_upstream.push(ROUTE[wire], Reply(json=url_answer(wire, url)))
    result = await make(wire).generate(REQUEST)
    assert result.images[0].data == png(color="green")


async def test_the_checked_address_is_the_one_connected_to(recorder: ConnectionRecorder) -> None:
    # DNS rebinding: the name is resolved once, checked, and the connection pinned to that IP.
    answers = [["127.0.0.2"], ["127.0.0.9"]]  # a second lookup would point elsewhere
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked) - 1, 1)]

    # For this test only, 127.0.0.2 counts as public; the name resolves nowhere outside it.
    transport = GuardedTransport(resolve=resolve,
                                 public=lambda ip: ip == ipaddress.ip_address("127.0.0.2"))
    fetcher = UrlFetcher(client=httpx.AsyncClient(transport=transport))
    try:
        data, mime = await fetcher(recorder.url("/pic.png", host="images.rebind.test"))
        assert mime == "image/png" and data == png(color="purple")
        assert asked == ["images.rebind.test"] and recorder.connections == 1
        assert f"host: images.rebind.test:{recorder.port}".encode() in recorder.requests[0].lower()
        # Resolved to an address that fails the check: refused, nothing connected.
        answers[0] = ["127.0.0.9"]
        asked.clear()
        with pytest.raises(BlockedAddress):
            await fetcher(recorder.url("/pic.png", host="other.rebind.test"))
        assert recorder.connections == 1
    finally:
        await fetcher.aclose()
        await transport.aclose()


async def test_a_pinned_https_fetch_still_verifies_the_certificate_for_the_name(
        tmp_path: Path) -> None:
    # Connecting to the checked IP keeps TLS honest: the certificate is checked for the name.
    server_tls, client_tls = tls_pair(str(tmp_path), "images.rebind.test")
    server = await ConnectionRecorder("127.0.0.2", tls=server_tls).start()

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.2"]

    transport = GuardedTransport(resolve=resolve, verify=client_tls,
                                 public=lambda ip: ip == ipaddress.ip_address("127.0.0.2"))
    fetcher = UrlFetcher(client=httpx.AsyncClient(transport=transport))
    try:
        data, _ = await fetcher(server.url("/pic.png", host="images.rebind.test"))
        assert data == png(color="purple")
        # Same address, another name: the certificate does not cover it, so nothing is fetched.
        with pytest.raises(UpstreamError, match="failed"):
            await fetcher(server.url("/pic.png", host="other.rebind.test"))
        assert len(server.requests) == 1
    finally:
        await fetcher.aclose()
        await transport.aclose()
        await server.stop()


@pytest.mark.parametrize("address", [
    "127.0.0.2", "10.1.2.3", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1",
    "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::1", "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
])
def test_addresses_that_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111",
                                     "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))
