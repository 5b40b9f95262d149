"""An upstream answer is bounded (issue 12, item 7): a byte cap while it streams, on every wire.

Native Gemini over httpx, openai-chat and openai-images over the openai SDK, and image URLs
from answers, driven for real against loopback servers: oversize, flooding, gzip-bombed and
padded answers are refused as upstream errors, once (never retried), with credits refunded.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.bootstrap import build_core
from bot.budget import DeliveryBudget, Lease, reading
from bot.config import ProviderSection, Settings
from bot.domain import Actor, ChatRef, ImageRequest
from bot.errors import UpstreamError
from bot.images import verify_image
from bot.providers.factory import build_provider
from tests.fake_hostile import (
    KEY,
    MIB,
    REQUEST,
    ROUTE,
    WIRES,
    Build,
    ChunkedFlood,
    ConnectionRecorder,
    answer,
    gif,
    gzipped,
    make_fixture,  # noqa: F401
    noisy_png,
    recorder_fixture,  # noqa: F401
    url_answer,
    webp,
)
from tests.fake_upstream import (
    FakeUpstream,
    Reply,
    Sleeps,
    b64,
    chat_body,
    fake_upstream_fixture,  # noqa: F401
    images_body,
    jpeg,
    png,
    sleeps_fixture,  # noqa: F401
)
from tests.outcomes import jobs

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


@pytest.mark.parametrize("wire", WIRES)
async def test_every_wire_leases_its_answer_before_reading_it(
        wire: str, make: Build, fake_upstream: FakeUpstream) -> None:
    @dataclass
    class Claim:
        lease: Lease | None = None

    budget, claim = DeliveryBudget(64 * MIB), Claim()
    body = answer(wire, b64(png()))
    fake_upstream.push(ROUTE[wire], Reply(json=body))
    with reading(budget, claim):
        await make(wire).generate(REQUEST)
    assert claim.lease is not None and claim.lease.size == len(json.dumps(body))
    # An image URL's download is not leased on its own: the result's images are, after.
    claim.lease.release()
    claim = Claim()
    fake_upstream.push(ROUTE[wire], Reply(json=url_answer(wire, fake_upstream.serve(
        "big.png", noisy_png(200, 200)))))
    with reading(budget, claim):
        await make(wire).generate(REQUEST)
    assert claim.lease is not None and claim.lease.size < 10_000


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
        result = await jobs(core).imagine(ImageRequest(actor=actor, chat=chat, prompt="a cat"))
        assert result.error == "error.upstream" and "Nothing was charged" in result.text
        assert (await core.service.usage(actor)).credits_left == before
        kinds = [e.kind for e in await core.store.ledger(actor.key)]
        assert kinds.count("refund") == 1 and "settle" not in kinds
        assert len(fake_upstream.seen("chat")) == 1 and sleeps == []  # not retried
        assert recorder.connections == 0
    finally:
        await core.stop(grace=0)
