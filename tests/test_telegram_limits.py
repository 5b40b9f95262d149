"""Telegram platform limits: 4K originals, fitting, 429s, quota, undeliverable results."""

from __future__ import annotations

import asyncio
import functools
import io
import os
from collections.abc import Callable
from dataclasses import replace

import pytest
from PIL import Image

from bot.config import Settings
from bot.domain import ImageData
from bot.providers.base import ProviderRequest, ProviderResult
from bot.providers.demo import DemoProvider
from tests.fake_telegram import ALICE, FAST, running_bot
from tests.fake_upstream import (
    FakeUpstream,
    Reply,
    b64,
    fake_upstream_fixture,  # noqa: F401
    gemini_body,
    png,
)

Factory = Callable[..., Settings]
# PTB itself warns when it builds a RetryAfter (its retry_after type changes in v23).
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


@functools.cache
def big_png() -> bytes:
    """A 5504x3072 PNG of about 20 MB (noise does not compress), like a real 4K result."""
    width, height, noisy = 5504, 3072, 1240
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image.paste(Image.frombytes("RGB", (width, noisy), os.urandom(width * noisy * 3)), (0, 900))
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def wide_png() -> bytes:
    """8000x300: over Telegram's 20:1 photo ratio and its w+h limit."""
    buf = io.BytesIO()
    Image.linear_gradient("L").resize((8000, 300)).save(buf, "PNG")
    return buf.getvalue()


class FixedProvider(DemoProvider):
    """The demo provider, except that one size returns prepared bytes."""

    def __init__(self, size: str, make: Callable[[], bytes]) -> None:
        super().__init__()
        self._size, self._make = size, make

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if request.size != self._size:
            return await super().generate(request)
        data = await asyncio.to_thread(self._make)
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
        return ProviderResult(images=(ImageData(data, "image/png", width, height, "big.png"),),
                              finish_reason="STOP", shape="test")


async def test_4k_result_arrives_as_fitted_photo_plus_original(settings_factory: Factory) -> None:
    provider = FixedProvider("4K", big_png)
    async with running_bot(settings_factory, providers={"demo": provider},
                           limits={"timeout_4k_seconds": 60}) as bot:
        fake = bot.fake
        fake.user_sends("/imagine a mountain range --model nano-banana-pro --size 4K --ar 16:9")
        photo = await fake.wait_for("sendPhoto", timeout=30)
        sent = photo.files["photo"]
        assert len(sent) <= 10_000_000
        with Image.open(io.BytesIO(sent)) as im:
            assert max(im.size) <= 2560 and abs(im.width / im.height - 5504 / 3072) < 0.01
        document = await fake.wait_for("sendDocument", timeout=30)
        assert document.files["document"] == big_png() and len(big_png()) > 19_000_000
        assert document.reply_to == photo.message["message_id"]
        assert "5504×3072" in document.text
        turn = await bot.turn(photo.message)
        assert await bot.turn(document.message) == turn
        assert "· 4K ·" in photo.text and "24 credits" in photo.text


async def test_photo_limits_are_fitted_not_failed(settings_factory: Factory) -> None:
    async with running_bot(settings_factory, providers={"demo": FixedProvider("1K", wide_png)}) as bot:
        fake = bot.fake
        fake.user_sends("/imagine a panorama")
        photo = await fake.wait_for("sendPhoto")
        with Image.open(io.BytesIO(photo.files["photo"])) as im:
            assert im.width + im.height <= 10_000 and im.width / im.height <= 20
        document = await fake.wait_for("sendDocument")
        assert document.files["document"] == wide_png()
        assert fake.calls_of("sendPhoto", ok=False) == []


async def test_a_429_is_waited_out(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.fail_next("sendPhoto", retry_after=1)
        fake.user_sends("/imagine a patient robot")
        refused = await fake.wait_for("sendPhoto", ok=False)
        assert refused.error.startswith("Too Many Requests")
        photo = await fake.wait_for("sendPhoto")
        assert photo.at - refused.at >= 1.0
        assert await bot.ledger(ALICE, ["reserve", "settle"]) == ["reserve", "settle"]


async def test_undeliverable_result_is_refunded(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.fail_next("sendPhoto", code=400, description="Bad Request: PHOTO_INVALID")
        fake.fail_next("sendDocument", code=400, description="Bad Request: DOCUMENT_INVALID")
        fake.user_sends("/imagine a lost parcel")
        answer = await fake.wait_for("sendMessage")
        assert answer.text == "I couldn't deliver the image to this chat. Nothing was charged."
        assert await bot.ledger(ALICE, ["reserve", "refund"]) == ["reserve", "refund"]
        assert (await bot.c.service.usage(ALICE.actor)).credits_left == 100
        fake.fail_next("sendPhoto", code=400, description="Bad Request: PHOTO_INVALID")
        fake.user_sends("/imagine a parcel sent as a file")
        document = await fake.wait_for("sendDocument")  # a refused photo goes as a file
        assert document.buttons and document.text.startswith("a parcel sent as a file")
        assert (await bot.turn(document.message)).prompt == "a parcel sent as a file"


async def test_an_upload_failing_for_good_is_refunded_once(settings_factory: Factory) -> None:
    # Telegram's front end answers 500 to every upload: the retries run out, the exception ends
    # the delivery, and the core refunds it once (the adapter never touches the money).
    timing = replace(FAST, send_retry_delays=(0.05, 0.05))
    async with running_bot(settings_factory, timing=timing) as bot:
        fake = bot.fake
        fake.fail_next("sendPhoto", times=3, code=500, description="Internal Server Error")
        fake.user_sends("/imagine a parcel lost for good")
        answer = await fake.wait_for("sendMessage")
        assert answer.text == "I couldn't deliver the image to this chat. Nothing was charged."
        assert len(fake.calls_of("sendPhoto", ok=False)) == 3  # tried once, retried twice
        assert await bot.ledger(ALICE, ["reserve", "refund"]) == ["reserve", "refund"]
        assert await bot.c.store.held_reservations() == []
        assert (await bot.c.service.usage(ALICE.actor)).credits_left == 100
        await fake.expect_none("sendPhoto")


async def test_a_shown_result_is_not_called_undeliverable(settings_factory: Factory) -> None:
    # The photo arrived but settling it failed (the store went away): the user has the image,
    # so nothing tells them it could not be delivered.
    async with running_bot(settings_factory) as bot:
        async def store_gone(*args: object, **kwargs: object) -> None:
            raise RuntimeError("store unavailable")

        bot.c.service.deliveries.bind = store_gone  # type: ignore[method-assign]
        bot.fake.user_sends("/imagine a parcel that arrived")
        await bot.fake.wait_for("sendPhoto")
        await bot.fake.expect_none("sendMessage")


async def test_quota_runs_out_mid_conversation(settings_factory: Factory) -> None:
    async with running_bot(settings_factory, quota={"user_daily_credits": 8}) as bot:
        fake = bot.fake
        fake.user_sends("/imagine a garden")
        first = await fake.wait_for("sendPhoto")
        assert "4 credits · 4 left" in first.text
        fake.user_sends("add a fountain", reply_to=first.message)
        second = await fake.wait_for("sendPhoto")
        assert "4 credits · 0 left" in second.text
        asked = fake.user_sends("add birds", reply_to=second.message)
        refusal = await fake.wait_for("sendMessage")
        assert refusal.reply_to == asked["message_id"]
        assert refusal.text.startswith("Not enough credits for this: it costs 4, and your daily "
                                       "allowance has 0 left. Resets in ")
        # Refused before any work (no wall-clock bound): nothing was reserved, see the ledger.
        await fake.expect_none("sendPhoto")
        assert await bot.ledger(ALICE) == ["reserve", "settle"] * 2
        fake.user_sends("/quota")
        quota = await fake.wait_for("sendMessage")
        assert "your daily allowance: 0 of 8 left" in quota.text


async def test_network_drops_are_ridden_out(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        assert bot.adapter is not None
        await fake.go_offline()
        fake.user_sends("/imagine sent while offline")
        await asyncio.sleep(1.5)
        assert not bot.adapter.connected  # /readyz would say so
        await fake.go_online()
        photo = await fake.wait_for("sendPhoto", timeout=15)
        assert photo.text.startswith("sent while offline")
        # Telegram unreachable at start-up: getMe is retried until it answers.
        await bot.stop()
        await fake.go_offline()
        starting = asyncio.create_task(bot.start())
        await asyncio.sleep(1.2)
        await fake.go_online()
        await asyncio.wait_for(starting, 15)
        fake.user_sends("/imagine after a cold start")
        await fake.wait_for("sendPhoto")


async def test_several_final_images_from_gemini_are_all_delivered(
        settings_factory: Factory, fake_upstream: FakeUpstream) -> None:
    """A native answer with two final (non-thought) images: both reach the chat, both bound."""
    from bot.providers.gemini import GeminiProvider

    fake_upstream.push("gemini", Reply(json=gemini_body([
        {"inlineData": {"mimeType": "image/png", "data": b64(png(color="red"))}, "thought": True},
        {"inlineData": {"mimeType": "image/png", "data": b64(png(64, 64, "green"))}},
        {"inlineData": {"mimeType": "image/png", "data": b64(png(64, 64, "blue"))}},
    ])))
    provider = GeminiProvider(name="demo", base_url=fake_upstream.url, api_key="k-test-123456")
    async with running_bot(settings_factory, providers={"demo": provider}) as bot:
        fake = bot.fake
        fake.user_sends("/imagine a storyboard in two panels")
        first = await fake.wait_for("sendPhoto")
        second = await fake.wait_for("sendPhoto")
        colours = []
        for call in (first, second):
            with Image.open(io.BytesIO(call.files["photo"])) as im:
                colours.append(im.convert("RGB").getpixel((0, 0)))
        assert colours == [(0, 128, 0), (0, 0, 255)]
        turn = await bot.turn(first.message)
        assert turn is not None and await bot.turn(second.message) == turn
        assert len(turn.output_hashes) == 2
