"""Telegram reference images: photos, albums, documents, replies to photos, and bad inputs."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from bot.config import Settings
from tests.fake_telegram import ALICE, BOB, BotHarness, png, running_bot

Factory = Callable[..., Settings]


async def test_photo_with_imagine_caption(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.user_sends(photo=png(), caption="/imagine make it snowy")
        photo = await fake.wait_for("sendPhoto")
        turn = await bot.turn(photo.message)
        assert (turn.prompt, len(turn.input_hashes), turn.kind) == ("make it snowy", 1, "imagine")


async def test_album_of_three_with_caption_on_the_second(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        parts = [fake.user_sends(photo=png(color=(i * 80, 40, 40)), media_group_id="A1",
                                 caption="/imagine combine these three" if i == 1 else None)
                 for i in range(3)]
        photo = await fake.wait_for("sendPhoto")
        assert photo.reply_to == parts[1]["message_id"]
        turn = await bot.turn(photo.message)
        assert len(set(turn.input_hashes)) == 3 and turn.prompt == "combine these three"
        await fake.expect_none("sendPhoto")  # one job for the whole album
        assert fake.calls_of("getFile") and len(fake.calls_of("getFile")) == 3


async def test_uncompressed_photo_as_document(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.user_sends(document=(png(), "scan.png", "image/png"), caption="/imagine sharpen")
        photo = await fake.wait_for("sendPhoto")
        assert len((await bot.turn(photo.message)).input_hashes) == 1


async def test_imagine_as_reply_to_someone_elses_photo(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        group = fake.group()
        theirs = fake.user_sends(photo=png(), chat=group, user=BOB)
        asked = fake.user_sends("/imagine make it purple", chat=group, reply_to=theirs)
        photo = await fake.wait_for("sendPhoto", chat=group)
        assert photo.reply_to == asked["message_id"]
        turn = await bot.turn(photo.message)
        assert (turn.kind, len(turn.input_hashes), turn.actor_key) == ("edit", 1, "telegram:1001")


async def test_private_photo_with_plain_caption_is_an_edit(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.user_sends(photo=png(), caption="turn it into a watercolor")
        photo = await fake.wait_for("sendPhoto")
        assert (await bot.turn(photo.message)).kind == "edit"
        fake.user_sends(photo=png())
        hint = await fake.wait_for("sendMessage")
        assert hint.text.startswith("Add a caption saying what to do with the photo")


async def _one_reply(bot: BotHarness, **sent: Any) -> str:
    fake = bot.fake
    if "album" in sent:
        messages = [fake.user_sends(photo=png(), media_group_id="BAD", caption=caption)
                    for caption in sent.pop("album")]
        asked = next(m for m in messages if m.get("caption"))
    else:
        asked = fake.user_sends(**sent)
    answer = await fake.wait_for("sendMessage")
    assert answer.reply_to == asked["message_id"]
    return answer.text


async def test_bad_inputs_get_one_clear_reply_and_cost_nothing(settings_factory: Factory) -> None:
    # A model limited to 3 references, so an album of 4 (Telegram allows 10) is too many.
    async with running_bot(settings_factory,
                           models={"nano-banana-2.1": {"max_references": 3}}) as bot:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"document": (b"%PDF-1.7 not an image", "report.pdf", "application/pdf"),
              "caption": "/imagine use this"},
             "That is not an image I can use (report.pdf)."),
            ({"document": (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "broken.png", "image/png"),
              "caption": "/imagine fix it"}, "That is not an image I can use"),
            ({"document": (os.urandom(25_000_000), "huge.jpg", "image/jpeg"),
              "caption": "/imagine shrink"}, "That file is 25.0 MB; the limit is 20.0 MB."),
            ({"photo": os.urandom(21_000_000), "caption": "/imagine big"},
             "That file is 21.0 MB; the limit is 20.0 MB."),
            ({"album": [None, "/imagine four refs", None, None]},
             "nano-banana-2.1 takes at most 3 reference images; this request has 4."),
            ({"text": "/imagine"}, "Tell me what to draw"),
            ({"text": "/imagine --ar 16:9"}, "Tell me what to draw"),
            ({"text": "/imagine a cat --stylize 9"}, "Unknown option “--stylize”"),
            ({"text": "/imagine a cat --style anime"}, "--style “anime” is not available"),
            ({"text": "/imagine a cat --n 9"}, "--n “9” is not available"),
            ({"text": "/imagine a cat --size 8K"}, "size “8K” is not available"),
            ({"text": "/imagine a cat --model dall-e-9"}, "model “dall-e-9” is not available"),
        ]
        for sent, expected in cases:
            text = await _one_reply(bot, **sent)
            assert expected in text, (sent.get("text") or sent.get("caption"), text)
        await bot.fake.expect_none("sendPhoto")
        assert await bot.ledger(ALICE) == []
        assert (await bot.c.service.usage(ALICE.actor)).credits_left == 100
