"""Telegram result buttons: reroll, larger size, variations, edit, delete, ownership, restarts."""

from __future__ import annotations

from collections.abc import Callable

from bot.config import Settings
from tests.fake_telegram import ADMIN, ALICE, BOB, running_bot

Factory = Callable[..., Settings]


async def test_reroll_upscale_and_variations(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.user_sends("/imagine a kite --model nano-banana-pro")
        result = await fake.wait_for("sendPhoto")
        original = await bot.turn(result.message)
        fake.press(result.message, "ib:reroll")
        await fake.wait_for("answerCallbackQuery")
        reroll = await fake.wait_for("sendPhoto")
        assert reroll.reply_to == result.message["message_id"]
        turn = await bot.turn(reroll.message)
        assert (turn.kind, turn.prompt, turn.size) == ("reroll", "a kite", "1K")
        fake.press(result.message, "ib:upscale:" + original.id + ":2K")
        bigger = await fake.wait_for("sendPhoto")
        assert "· 2K ·" in bigger.text
        document = await fake.wait_for("sendDocument")  # 2K also comes as the original file
        assert document.reply_to == bigger.message["message_id"]
        assert (await bot.turn(document.message)).size == "2K"
        fake.press(result.message, "ib:variations")
        variation = await fake.wait_for("sendPhoto")
        assert (await bot.turn(variation.message)).kind == "variation"


async def test_button_pressed_by_someone_else(settings_factory: Factory) -> None:
    async with running_bot(settings_factory, bot={"admins": ["telegram:9001"]}) as bot:
        fake = bot.fake
        group = fake.group()
        fake.user_sends("/imagine a tower", chat=group)
        result = await fake.wait_for("sendPhoto", chat=group)
        fake.press(result.message, "ib:reroll", user=BOB)
        answer = await fake.wait_for("answerCallbackQuery")
        assert answer.params["text"] == "Only the requester (or an admin) can do that."
        fake.press(result.message, "ib:delete", user=BOB)
        await fake.wait_for("answerCallbackQuery", lambda c: "requester" in c.params["text"])
        await fake.expect_none("sendPhoto")
        assert await bot.ledger(BOB) == []
        fake.press(result.message, "ib:reroll", user=ADMIN)  # admins may
        await fake.wait_for("sendPhoto", chat=group)


async def test_delete_and_edit_buttons(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.user_sends("/imagine a bridge")
        result = await fake.wait_for("sendPhoto")
        turn = await bot.turn(result.message)
        fake.press(result.message, "ib:edit")
        hint = await fake.wait_for("answerCallbackQuery")
        assert hint.params["show_alert"] is True
        assert hint.params["text"].startswith("Reply to this image with what to change")
        fake.press(result.message, "ib:delete")
        answer = await fake.wait_for("answerCallbackQuery")
        assert answer.params["text"] == "Deleted."
        deleted = await fake.wait_for("deleteMessage")
        assert deleted.params["message_id"] == result.message["message_id"]
        assert await bot.c.conversations.get(turn.id) is None


async def test_buttons_work_after_a_restart(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.user_sends("/imagine a lantern")
        result = await fake.wait_for("sendPhoto")
        first = await bot.turn(result.message)
        await bot.restart()  # new Application, new Core, same data dir
        fake.press(result.message, "ib:reroll")
        reroll = await fake.wait_for("sendPhoto")
        assert (await bot.turn(reroll.message)).prompt == "a lantern"
        fake.user_sends("add fireflies", reply_to=result.message)
        edited = await fake.wait_for("sendPhoto")
        assert (await bot.turn(edited.message)).parent_id == first.id
        assert (await bot.ledger(ALICE)).count("settle") == 3
