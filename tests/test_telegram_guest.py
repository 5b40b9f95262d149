"""Telegram guest mode (Bot API 10.0): summoned by @username in a chat the bot has not joined."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest

from adapters.telegram.guest import GUEST_PLATFORM
from bot.config import Settings
from bot.domain import MessageRef, Turn
from bot.providers.base import ProviderRequest, ProviderResult
from tests.fake_telegram import ALICE, BOB, ApiError, BotHarness, Call
from tests.fake_telegram_guest import GuestPost, GuestTelegram, running_guest_bot
from tests.helpers import png, png_data

Factory = Callable[..., Settings]
SUMMON = "@ImagineTestBot"


def guest_fake(bot: BotHarness) -> GuestTelegram:
    """The harness's fake, with its guest-mode side."""
    assert isinstance(bot.fake, GuestTelegram)
    return bot.fake


async def answered(fake: GuestTelegram, query_id: str | None) -> tuple[Call, GuestPost]:
    """The answerGuestQuery call for ``query_id`` and what it posted."""
    assert query_id is not None
    call = await fake.wait_for("answerGuestQuery",
                               lambda c: c.params.get("guest_query_id") == query_id)
    post = next(p for p in fake.guests.posts if p.query_id == query_id)
    return call, post


async def subscription(fake: GuestTelegram) -> list[str]:
    """The update types the bot asked for (its first getUpdates may still be on its way)."""
    if fake.webhook is None:
        await fake.wait_for("getUpdates")
    assert fake.allowed_updates is not None
    return fake.allowed_updates


async def turn_of(bot: BotHarness, post: GuestPost) -> Turn:
    """The turn a guest answer shows (bound to its inline message)."""
    ref = MessageRef(GUEST_PLATFORM, f"guest:{post.chat['id']}", post.inline_message_id)
    for _ in range(100):
        if (turn := await bot.c.service.turn_for(ref)) is not None:
            return turn
        await asyncio.sleep(0.02)
    raise AssertionError("the guest answer is not bound to a turn")


async def test_a_summons_is_answered_with_a_photo_uploaded_to_the_cache_chat(
        settings_factory: Factory) -> None:
    async with running_guest_bot(settings_factory) as bot:
        fake = guest_fake(bot)
        assert "guest_message" in await subscription(fake)
        elsewhere = fake.elsewhere()
        query = fake.summon(f"{SUMMON} a lighthouse at dusk --ar 16:9", user=ALICE,
                            chat=elsewhere)
        call, post = await answered(fake, query)
        cached = fake.calls_of("sendPhoto")
        assert [c.chat_id for c in cached] == [bot.settings.telegram.cache_chat_id]
        assert call.at > cached[0].at  # generated and uploaded first, then answered
        assert post.result["type"] == "photo"
        assert post.result["photo_file_id"] == cached[0].message["photo"][-1]["file_id"]
        assert post.text.startswith("a lighthouse at dusk") and post.chat is elsewhere
        turn = await turn_of(bot, post)
        assert turn.actor_key == f"telegram:{ALICE.id}" and turn.aspect == "16:9"
        assert turn.chat_key == f"telegram:guest:{elsewhere['id']}"
        # The summoner pays; nothing was sent into the chat the bot is not a member of.
        assert await bot.ledger(ALICE, ["reserve", "settle"]) == ["reserve", "settle"]
        assert not [c for c in fake.calls if c.chat_id == elsewhere["id"]]
        assert not [c for c in fake.calls if not c.ok]


async def test_quotas_apply_to_the_summoning_user(settings_factory: Factory) -> None:
    async with running_guest_bot(settings_factory, quota={"user_daily_credits": 4}) as bot:
        fake = guest_fake(bot)
        elsewhere = fake.elsewhere()
        _, first = await answered(fake, fake.summon(f"{SUMMON} a fox", user=ALICE,
                                                    chat=elsewhere))
        assert first.result["type"] == "photo"
        _, refused = await answered(fake, fake.summon(f"{SUMMON} another fox", user=ALICE,
                                                      chat=elsewhere))
        assert refused.result["type"] == "article"
        assert refused.text.startswith("Not enough credits for this")
        assert await bot.ledger(ALICE) == ["reserve", "settle"]
        _, bobs = await answered(fake, fake.summon(f"{SUMMON} a third fox", user=BOB,
                                                   chat=elsewhere))
        assert bobs.result["type"] == "photo"
        assert await bot.ledger(BOB, ["reserve", "settle"]) == ["reserve", "settle"]


async def test_summons_under_a_photo_edits_that_photo(settings_factory: Factory) -> None:
    async with running_guest_bot(settings_factory) as bot:
        fake = guest_fake(bot)
        elsewhere = fake.elsewhere()
        picture = fake.someones_photo(elsewhere, BOB, png(96, 64))
        _, post = await answered(fake, fake.summon(f"{SUMMON} make it a watercolor",
                                                   user=ALICE, chat=elsewhere,
                                                   reply_to=picture))
        turn = await turn_of(bot, post)
        assert turn.kind == "edit" and len(turn.input_hashes) == 1
        assert turn.prompt == "make it a watercolor"
        # A summons without any words is told so (nothing charged).
        _, empty = await answered(fake, fake.summon(SUMMON, user=ALICE, chat=elsewhere))
        assert empty.result["type"] == "article" and "what to draw" in empty.text
        assert await bot.ledger(ALICE) == ["reserve", "settle"]


class SameImage:
    """Always the same PNG (so a second answer can reuse the first upload's file id)."""

    name = "demo"

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        """One fixed image."""
        return ProviderResult(images=(png_data(64, 64),))

    async def aclose(self) -> None:
        """Nothing to close."""


async def test_a_file_id_already_uploaded_is_reused(settings_factory: Factory) -> None:
    async with running_guest_bot(settings_factory, providers={"demo": SameImage()}) as bot:
        fake = guest_fake(bot)
        elsewhere = fake.elsewhere()
        _, one = await answered(fake, fake.summon(f"{SUMMON} a dot", user=ALICE, chat=elsewhere))
        _, two = await answered(fake, fake.summon(f"{SUMMON} a dot", user=BOB, chat=elsewhere))
        assert one.result["photo_file_id"] == two.result["photo_file_id"]
        assert len(fake.calls_of("sendPhoto")) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_webhook_mode_subscribes_to_guest_messages(settings_factory: Factory) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/telegram/hook"
    async with running_guest_bot(settings_factory, telegram={
            "webhook_url": url, "webhook_listen": f"127.0.0.1:{port}"}) as bot:
        fake = guest_fake(bot)
        assert fake.webhook is not None
        assert "guest_message" in await subscription(fake)
        _, post = await answered(fake, fake.summon(f"{SUMMON} a parcel", user=ALICE,
                                                   chat=fake.elsewhere()))
        assert post.result["type"] == "photo"


async def test_without_a_cache_chat_guest_queries_are_not_subscribed(
        settings_factory: Factory) -> None:
    async with running_guest_bot(settings_factory,
                                 telegram={"cache_chat_id": None}) as bot:
        fake = guest_fake(bot)
        assert "guest_message" not in await subscription(fake)
        assert fake.summon(f"{SUMMON} a cat", user=ALICE, chat=fake.elsewhere()) is not None
        assert [u for u in fake.dropped if "guest_message" in u]
        await fake.expect_none("answerGuestQuery")


async def test_guest_mode_off_in_botfather_is_logged(settings_factory: Factory,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="adapters.telegram.guest"):
        async with running_guest_bot(settings_factory, guest_mode=False) as bot:
            fake = guest_fake(bot)
            assert fake.summon(f"{SUMMON} a cat", user=ALICE, chat=fake.elsewhere()) is None
    assert any("guest mode is off" in r.getMessage() for r in caplog.records)


async def test_fake_refuses_answers_telegram_refuses(settings_factory: Factory) -> None:
    """Unknown or answered queries, unknown file ids, long captions, bad ids and types."""
    async with running_guest_bot(settings_factory) as bot:
        fake = guest_fake(bot)
        answered_query = fake.summon(f"{SUMMON} a kite", user=ALICE, chat=fake.elsewhere())
        await answered(fake, answered_query)
        # A query the bot never saw (made on the fake's side only), answered by hand below.
        fake.guests.queries["manual"] = {"chat": fake.elsewhere(), "from": ALICE.as_dict(),
                                         "answered": False}
        article = {"type": "article", "id": "x", "title": "t",
                   "input_message_content": {"message_text": "a"}}
        photo_id = fake.calls_of("sendPhoto")[0].message["photo"][-1]["file_id"]
        refused: list[tuple[str | None, dict[str, Any]]] = [
            (answered_query, article),
            ("unknown", article),
            ("manual", {"type": "photo", "id": "p", "photo_file_id": "unknown"}),
            ("manual", {"type": "photo", "id": "p", "photo_file_id": photo_id,
                        "caption": "c" * 1025}),
            ("manual", {**article, "id": ""}),
            ("manual", {**article, "title": ""}),
            ("manual", {"type": "poll", "id": "x"}),
        ]
        for query_id, result in refused:
            with pytest.raises(ApiError):
                await fake._m_answerGuestQuery({"guest_query_id": query_id,
                                                "result": json.dumps(result)}, {})
        sent = await fake._m_answerGuestQuery(
            {"guest_query_id": "manual", "result": json.dumps(
                {"type": "photo", "id": "p", "photo_file_id": photo_id, "caption": "ok"})}, {})
        assert sent["inline_message_id"]
