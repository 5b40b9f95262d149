"""What a hostile upstream cannot do: oversize or padded answers, and image URLs aimed inward.

Every wire (native Gemini over httpx, openai-chat and openai-images over the openai SDK, and the
image URL downloader) is driven for real against loopback servers (issue 12, items 7 and 8).
"""

from __future__ import annotations

import io
import ipaddress
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from bot.bootstrap import build_core
from bot.config import ProviderSection, Settings
from bot.domain import Actor, ChatRef, ImageRequest
from bot.errors import UpstreamError
from bot.providers.base import ImageProvider, ProviderRequest
from bot.providers.extract import UrlFetcher, verify_image
from bot.providers.factory import build_provider
from bot.providers.gemini import GeminiProvider
from bot.providers.netguard import BlockedAddress, GuardedTransport, is_public
from bot.providers.openai_chat import OpenAIChatProvider
from bot.providers.openai_images import OpenAIImagesProvider
from bot.providers.retry import RetryPolicy
from tests.fake_upstream import (
    ChunkedFlood,
    ConnectionRecorder,
    FakeUpstream,
    Reply,
    Sleeps,
    b64,
    chat_body,
    fake_upstream_fixture,  # noqa: F401
    gemini_body,
    gif,
    gzipped,
    images_body,
    jpeg,
    noisy_png,
    png,
    recorder_fixture,  # noqa: F401
    sleeps_fixture,  # noqa: F401
    tls_pair,
    webp,
)

KEY = "sk-test-limits-0123456789"
MIB = 1024 * 1024
REQUEST = ProviderRequest(model_id="m", prompt="a cat", timeout=20.0)
Build = Callable[..., ImageProvider]


@pytest.fixture
async def make(fake_upstream: FakeUpstream, sleeps: Sleeps) -> AsyncIterator[Build]:
    """``make(wire, base_url=..., max_response_mb=...)``: providers closed after the test."""
    made: list[ImageProvider] = []

    def build(wire: str, base_url: str | None = None, max_response_mb: int = 1) -> ImageProvider:
        policy = RetryPolicy(max_retries=3, sleep=sleeps, jitter=lambda: 0.5)
        common: dict[str, Any] = {"name": wire, "api_key": KEY, "policy": policy,
                                  "max_response_mb": max_response_mb}
        provider: ImageProvider
        if wire == "gemini":
            provider = GeminiProvider(base_url=base_url or fake_upstream.url, **common)
        elif wire == "chat":
            provider = OpenAIChatProvider(base_url=base_url or fake_upstream.v1, **common)
        else:
            provider = OpenAIImagesProvider(base_url=base_url or fake_upstream.v1, **common)
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


def answer(wire: str, payload: str) -> dict[str, Any]:
    """An answer carrying ``payload`` as base64 image data in ``wire``'s shape."""
    if wire == "gemini":
        return gemini_body([{"inlineData": {"mimeType": "image/png", "data": payload}}])
    if wire == "chat":
        return chat_body("", images=[{"image_url": {"url": f"data:image/png;base64,{payload}"}}])
    return images_body({"b64_json": payload})


ROUTE = {"gemini": "gemini", "chat": "chat", "images": "images.generate"}
WIRES = tuple(ROUTE)
_CONNECTS: list[list[Any]] = []  # the armed recorders of every socket connect in this process


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Record each TCP connect while armed; stop any outside 127.0.0.0/8 before it leaves."""
    if event != "socket.connect" or not _CONNECTS or not isinstance(args[1], tuple):
        return
    host = str(args[1][0])
    _CONNECTS[-1].append(host)
    if not host.startswith("127."):  # even if the guard broke, tests never reach a real network
        raise ConnectionRefusedError(f"test tripwire: connect to {host}")


sys.addaudithook(_audit)


@pytest.fixture
def connects() -> Iterator[list[Any]]:
    """Every address this process connects to during the test."""
    seen: list[Any] = []
    _CONNECTS.append(seen)
    yield seen
    _CONNECTS.remove(seen)


# --- item 7: a byte cap while streaming, on every wire ------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
async def test_an_answer_over_the_cap_is_refused_once_not_retried(
        wire: str, make: Build, fake_upstream: FakeUpstream, sleeps: Sleeps) -> None:
    big = noisy_png(700, 700)  # ~1.4 MiB: a real image, just bigger than this route allows
    fake_upstream.push(ROUTE[wire], Reply(json=answer(wire, b64(big))))
    with pytest.raises(UpstreamError, match="cap"):
        await make(wire, max_response_mb=1).generate(REQUEST)
    assert len(fake_upstream.seen(ROUTE[wire])) == 1 and sleeps == []
    # The same answer passes when the route's cap allows it.
    fake_upstream.push(ROUTE[wire], Reply(json=answer(wire, b64(big))))
    result = await make(wire, max_response_mb=4).generate(REQUEST)
    assert result.images[0].data == big


@pytest.mark.parametrize("wire", WIRES)
async def test_a_chunked_flood_is_cut_off_while_streaming(wire: str, make: Build) -> None:
    flood = await ChunkedFlood(total=256 * MIB).start()
    try:
        base = flood.url if wire == "gemini" else f"{flood.url}/v1"
        with pytest.raises(UpstreamError, match="cap"):
            await make(wire, base_url=base, max_response_mb=1).generate(REQUEST)
        # Refused as the bytes came (no Content-Length to go by): far less than 256 MiB was sent,
        # only the cap plus what the loopback socket buffers held.
        assert flood.sent < 32 * MIB
        assert flood.connections == 1
    finally:
        await flood.stop()


@pytest.mark.parametrize("wire", WIRES)
async def test_a_gzip_bomb_is_bounded_after_decoding(
        wire: str, make: Build, fake_upstream: FakeUpstream) -> None:
    bomb = answer(wire, "A" * (8 * MIB))  # 8 MiB of JSON that gzips to a few KB
    reply = gzipped(bomb)
    assert isinstance(reply.body, bytes) and len(reply.body) < 64 * 1024
    fake_upstream.push(ROUTE[wire], reply)
    with pytest.raises(UpstreamError, match="cap"):
        await make(wire, max_response_mb=1).generate(REQUEST)
    # A legitimate gzipped answer still decodes (once) and works.
    fake_upstream.push(ROUTE[wire], gzipped(answer(wire, b64(png(color="red")))))
    result = await make(wire, max_response_mb=1).generate(REQUEST)
    assert result.images[0].data == png(color="red")


async def test_max_response_mb_is_configured_per_provider(fake_upstream: FakeUpstream) -> None:
    assert ProviderSection(api="gemini").max_response_mb == 128
    with pytest.raises(ValidationError):
        ProviderSection(api="gemini", max_response_mb=0)
    section = ProviderSection(api="gemini", base_url=fake_upstream.url, max_response_mb=1,
                              max_retries=0)
    provider = build_provider("g", section, api_key=KEY)
    try:
        fake_upstream.push("gemini", Reply(json=answer("gemini", "A" * (2 * MIB))))
        with pytest.raises(UpstreamError, match="cap"):
            await provider.generate(REQUEST)
    finally:
        await provider.aclose()


async def test_many_image_urls_in_one_answer_add_up_to_the_cap(
        make: Build, fake_upstream: FakeUpstream) -> None:
    urls = [fake_upstream.serve(f"n{i}.png", noisy_png(300, 300)) for i in range(5)]  # ~270 KB
    fake_upstream.push("chat", Reply(json=chat_body(" ".join(f"![{i}]({u})"
                                                             for i, u in enumerate(urls)))))
    with pytest.raises(UpstreamError, match="images of one answer exceed"):
        await make("chat", max_response_mb=1).generate(REQUEST)
    fake_upstream.push("chat", Reply(json=chat_body(" ".join(f"![{i}]({u})"
                                                             for i, u in enumerate(urls[:2])))))
    assert len((await make("chat", max_response_mb=1).generate(REQUEST)).images) == 2


# --- item 7: nothing after the end of the image --------------------------------------------------


def _with_thumbnail(main: bytes, thumb: bytes) -> bytes:
    """``main`` with an APP1 segment that holds a whole JPEG (its own SOI ... EOI) inside."""
    payload = b"Exif\x00\x00" + thumb
    return main[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + main[2:]


@pytest.mark.parametrize("make_image", [png, jpeg, gif, webp], ids=["png", "jpeg", "gif", "webp"])
async def test_padding_after_the_image_is_refused(make_image: Callable[[], bytes]) -> None:
    image = make_image()
    with pytest.raises(UpstreamError, match="unexpected bytes after"):
        await verify_image(image + b"\x00" * 4096)
    with pytest.raises(UpstreamError, match="unexpected bytes after"):
        await verify_image(image + image)  # a second image is trailing data too
    exact = await verify_image(image)
    assert exact.data == image
    # A few bytes of slack are tolerated and trimmed: what is stored is what was verified.
    slack = await verify_image(image + b"\n\x00\x00")
    assert slack.data == image


async def test_jpeg_end_is_the_frame_eoi_not_the_last_ffd9() -> None:
    main, thumb = jpeg(64, 64), jpeg(8, 8, color="red")
    with_thumb = _with_thumbnail(main, thumb)
    assert (await verify_image(with_thumb)).data == with_thumb
    with pytest.raises(UpstreamError, match="unexpected bytes after"):
        await verify_image(main + b"\x00" * 1000 + b"\xff\xd9")  # junk dressed as an EOI


async def test_padded_png_answer_is_refused_on_the_wire(
        make: Build, fake_upstream: FakeUpstream) -> None:
    padded = png() + b"\x00" * (512 * 1024)  # decodes fine: the decoder stops at IEND
    fake_upstream.push("images.generate", Reply(json=images_body({"b64_json": b64(padded)})))
    with pytest.raises(UpstreamError, match="unexpected bytes after"):
        await make("images", max_response_mb=4).generate(REQUEST)


async def test_padded_image_behind_a_url_is_refused(
        make: Build, fake_upstream: FakeUpstream) -> None:
    url = fake_upstream.serve("padded.png", png() + b"\x00" * 100_000)
    fake_upstream.push("chat", Reply(json=chat_body(f"![img]({url})")))
    with pytest.raises(UpstreamError, match="unexpected bytes after"):
        await make("chat").generate(REQUEST)


async def test_other_formats_are_not_taken_from_upstream() -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "BMP")
    with pytest.raises(UpstreamError, match="format"):
        await verify_image(buf.getvalue())


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
        fake_upstream.push(ROUTE[wire], Reply(json=_url_answer(wire, url)))
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
    fake_upstream.push(ROUTE[wire], Reply(json=_url_answer(wire, url)))
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


def _url_answer(wire: str, url: str) -> dict[str, Any]:
    if wire == "gemini":
        return gemini_body([{"text": f"Here it is: ![result]({url})"}])
    if wire == "chat":
        return chat_body(f"![result]({url})")
    return images_body({"url": url})



@pytest.mark.parametrize("hostile", ["oversize", "padded", "inward"])
async def test_refused_answers_are_upstream_errors_and_refunded(
        hostile: str, fake_upstream: FakeUpstream, sleeps: Sleeps, tmp_path: Path,
        recorder: ConnectionRecorder) -> None:
    settings = Settings.model_validate({
        "bot": {"data_dir": str(tmp_path / "data")},
        "providers": {"relay": {"api": "openai-chat", "base_url": fake_upstream.v1,
                                "api_key_env": "RELAY_API_KEY", "max_response_mb": 1}}})
    provider = build_provider("relay", settings.providers["relay"], api_key=KEY, sleep=sleeps)
    core = build_core(settings, providers={"relay": provider})
    await core.start()
    actor, chat = Actor("telegram", "42"), ChatRef("telegram", "42")
    reply = {
        "oversize": Reply(json=answer("chat", b64(noisy_png(700, 700)))),
        "padded": Reply(json=answer("chat", b64(png() + b"\x00" * 4096))),
        "inward": Reply(json=chat_body(f"![x]({recorder.url()})")),
    }[hostile]
    try:
        before = (await core.service.usage(actor)).credits_left
        fake_upstream.push("chat", reply)
        result = await core.service.imagine(ImageRequest(actor=actor, chat=chat, prompt="a cat"))
        assert result.error == "error.upstream" and "Nothing was charged" in result.text
        assert (await core.service.usage(actor)).credits_left == before
        kinds = [e.kind for e in await core.store.ledger(actor.key)]
        assert kinds.count("refund") == 1 and "settle" not in kinds
        assert len(fake_upstream.seen("chat")) == 1 and sleeps == []  # not retried
        assert recorder.connections == 0
    finally:
        await core.stop(grace=0)
