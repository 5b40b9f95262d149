"""Issue 16 on Telegram, end to end against the fake Bot API: a batch of four with one failing
(an album of three, one refund, the books), U2 -> a 4K of candidate 2, V3 -> a variation of
candidate 3, the keyboard after a restart, a style with --no, and /settings n and style."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from typing import Any

from PIL import Image

from bot.config import Settings
from bot.domain import ImageData
from bot.errors import UpstreamError
from bot.providers.base import ProviderRequest, ProviderResult
from tests.fake_telegram import ALICE, BotHarness, running_bot
from tests.helpers import png
from tests.test_service import FakeProvider

Factory = Callable[..., Settings]
COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200),
          (200, 30, 200), (120, 120, 120), (250, 150, 50)]


def candidates(fail_at: int | None = None) -> FakeProvider:
    """A provider whose every answer has its own colour (the ``fail_at``-th call fails)."""
    count = itertools.count()

    def outcome() -> object:
        n = next(count)
        if n == fail_at:
            return UpstreamError("boom")
        color = COLORS[n % len(COLORS)]
        return ProviderResult(images=(ImageData(png(64, 64, color), "image/png", 64, 64),),
                              text="", finish_reason="STOP")
    return FakeProvider(outcome)


def color_of(data: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(data)) as im:
        r, g, b = im.convert("RGB").getpixel((im.width // 2, im.height // 2))  # type: ignore[misc]
        return int(r), int(g), int(b)


def near(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return all(abs(x - y) <= 12 for x, y in zip(a, b, strict=True))


async def sent_batch(bot: BotHarness, text: str) -> tuple[Any, Any]:
    """Send ``text``; the album call and the keyboard message after it."""
    bot.fake.user_sends(text)
    album = await bot.fake.wait_for("sendMediaGroup", timeout=15)
    keyboard = await bot.fake.wait_for("sendMessage", lambda c: bool(c.buttons))
    return album, keyboard


async def test_a_batch_of_four_with_one_failure_then_u2_v3_and_a_restart(
        settings_factory: Factory) -> None:
    provider = candidates(fail_at=2)
    async with running_bot(settings_factory, providers={"demo": provider}) as bot:
        fake = bot.fake
        album, keys = await sent_batch(bot, "/imagine four foxes --n 4 --size 2K")
        photos = album.result
        assert len(photos) == 3 and [p["caption"] for p in photos] == ["1", "2", "3"]
        assert len({p["media_group_id"] for p in photos}) == 1
        assert "four foxes" in keys.text and "Batch: 3 of 4. 1 failed and cost nothing." in keys.text
        turns = [await bot.turn(p) for p in photos]  # each photo bound to its own candidate
        assert len({t.id for t in turns}) == 3 and all(t.size == "2K" for t in turns)
        price = turns[0].credits
        big_cost = next(a.cost for a in bot.c.service.actions_for(turns[0]) if a.kind == "upscale")
        assert keys.button_texts == [
            f"U1 · 4K ({big_cost})", f"U2 · 4K ({big_cost})", f"U3 · 4K ({big_cost})",
            f"V1 ({price})", f"V2 ({price})", f"V3 ({price})", f"🔄 Reroll all 3 ({price * 3})"]
        # The books as the user expects: four held up front, the failed one refunded, three paid.
        assert await bot.ledger(ALICE, ["reserve"] * 4 + ["refund"] + ["settle"] * 3) == (
            ["reserve"] * 4 + ["refund"] + ["settle"] * 3)
        entries = await bot.c.store.ledger(f"telegram:{ALICE.id}")
        assert sum(e.credits for e in entries) == 3 * price
        assert [e.credits for e in entries if e.kind == "refund"] == [-price]
        colors = [c for i, c in enumerate(COLORS[:4]) if i != 2]

        fake.press(keys.message, f"ib:upscale:{turns[1].id}")  # U2
        big = await fake.wait_for("sendPhoto", timeout=15)
        upscaled = await bot.turn(big.message)
        assert (upscaled.kind, upscaled.size, upscaled.prompt) == ("upscale", "4K", "four foxes")
        sent: ProviderRequest = provider.requests[-1]
        assert sent.size == "4K" and near(color_of(sent.references[0].data), colors[1])
        assert sent.prompt.startswith("Render this exact image again at a higher resolution")

        fake.press(keys.message, f"ib:variations:{turns[2].id}")  # V3
        varied = await bot.turn((await fake.wait_for("sendPhoto", timeout=15)).message)
        assert varied.kind == "variation" and varied.prompt == "four foxes"
        assert near(color_of(provider.requests[-1].references[0].data), colors[2])
        assert provider.requests[-1].prompt.startswith("Make a subtle variation")

        await bot.restart()  # new Application, new Core: the keyboard still works
        fake.press(keys.message, "ib:reroll")
        again = await fake.wait_for("sendMediaGroup", timeout=15)
        assert len(again.result) == 3
        await fake.wait_for("sendMessage", lambda c: "Batch: 3 of 3." in c.text)


async def test_a_style_with_exclusions_and_the_settings_defaults(settings_factory: Factory) -> None:
    provider = candidates()
    async with running_bot(settings_factory, providers={"demo": provider}) as bot:
        fake = bot.fake
        fake.user_sends("/imagine a kite --style sticker --no text, logos")
        result = await fake.wait_for("sendPhoto", timeout=15)
        assert result.text.startswith("a kite\n")  # the user's words, not the template
        sent = provider.requests[-1].prompt
        assert sent.startswith("A sheet of die-cut vinyl stickers of a kite")
        assert sent.endswith("Leave out entirely: text, logos.")
        fake.press(result.message, "ib:reroll")
        await fake.wait_for("sendPhoto", timeout=15)
        assert provider.requests[-1].prompt == sent  # the recipe is kept

        fake.user_sends("/settings")
        menu = await fake.wait_for("sendMessage", lambda c: "Images per request 1" in c.text)
        fake.press(menu.message, f"st:{ALICE.id}:open:n=")
        picked = await fake.wait_for("editMessageText")
        assert [b for b in picked.button_texts if b in "1234"] == ["1", "2", "3", "4"]
        fake.press(menu.message, f"st:{ALICE.id}:set:n=2")
        await fake.wait_for("editMessageText", lambda c: "Images per request 2" in c.text)
        fake.press(menu.message, f"st:{ALICE.id}:open:style=")
        styles = await fake.wait_for("editMessageText")
        assert "Watercolor" in styles.button_texts and "Pixel art" in styles.button_texts
        fake.press(menu.message, f"st:{ALICE.id}:set:style=watercolor")
        await fake.wait_for("editMessageText", lambda c: "style Watercolor" in c.text)
        album, _ = await sent_batch(bot, "/imagine a harbour")
        assert len(album.result) == 2
        assert provider.requests[-1].prompt.startswith("A watercolor painting of a harbour")


async def test_a_batch_album_on_its_way_at_a_shutdown_is_shown_once_and_paid_once(
        settings_factory: Factory) -> None:
    """Telegram has the album; its answer comes back after the shutdown cancelled the send."""
    async with running_bot(settings_factory, providers={"demo": candidates()}) as bot:
        fake = bot.fake
        fake.fail_next("sendMediaGroup", retry_after=1)  # parks the batch in the outbox
        fake.answer_after["sendMediaGroup"] = 8.0  # past the shutdown's grace 1 s + 5 s
        fake.user_sends("/imagine two herons --n 2")
        album = await fake.wait_for("sendMediaGroup", timeout=20)
        await bot.restart()
        fake.answer_after.clear()
        await fake.expect_none("sendMediaGroup", within=2.0)
        assert len(fake.calls_of("sendMediaGroup")) == 1 and not fake.calls_of("sendPhoto")
        assert await bot.ledger(ALICE, ["reserve"] * 2 + ["settle"] * 2) == (
            ["reserve"] * 2 + ["settle"] * 2)
        assert await bot.c.store.held_reservations() == []
        turns = [(await bot.turn(m)).id for m in album.result]  # each photo its own candidate
        assert len(set(turns)) == 2


async def test_a_parked_batch_goes_out_as_its_album_after_a_restart(
        settings_factory: Factory) -> None:
    """Told to wait 30 s, the batch outlives a restart and arrives as it would have: an album,
    each photo bound to its candidate, then its U/V keyboard; each candidate paid for once."""
    async with running_bot(settings_factory, providers={"demo": candidates()}) as bot:
        fake = bot.fake
        fake.fail_next("sendMediaGroup", retry_after=30)
        fake.user_sends("/imagine two herons --n 2")
        await fake.wait_for("sendMediaGroup", ok=False, timeout=20)
        await bot.restart()
        album = await fake.wait_for("sendMediaGroup", timeout=20)
        keyboard = await fake.wait_for("sendMessage", lambda c: "Batch: 2 of 2." in c.text)
        labels = [b.split()[0] for b in keyboard.button_texts]
        assert {"U1", "U2", "V1", "V2"} <= set(labels), keyboard.button_texts
        assert not fake.calls_of("sendPhoto")
        turns = [(await bot.turn(m)).id for m in album.result]
        assert len(set(turns)) == 2  # a reply to photo 2 edits candidate 2
        assert await bot.ledger(ALICE, ["reserve"] * 2 + ["settle"] * 2) == (
            ["reserve"] * 2 + ["settle"] * 2)


async def test_a_batch_refused_with_429s_waits_and_arrives_whole(settings_factory: Factory) -> None:
    """A batch is a result: its album waits out every 429, however many (a reply gives up after
    three), and goes out as the album, each candidate paid for once; no refund, no loose photos."""
    async with running_bot(settings_factory, providers={"demo": candidates()}) as bot:
        fake = bot.fake
        fake.fail_next("sendMediaGroup", times=4, retry_after=1)
        fake.user_sends("/imagine two herons --n 2")
        album = await fake.wait_for("sendMediaGroup", timeout=20)
        assert len(album.result) == 2 and len(fake.calls_of("sendMediaGroup", ok=False)) == 4
        await fake.wait_for("sendMessage", lambda c: "Batch: 2 of 2." in c.text)
        assert not fake.calls_of("sendPhoto")
        assert await bot.ledger(ALICE, ["reserve"] * 2 + ["settle"] * 2) == (
            ["reserve"] * 2 + ["settle"] * 2)
