"""Telegram /imagine end to end: private and group chats, flags, menus, progress, concurrency."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from adapters.telegram import Timing
from bot.config import Settings
from bot.providers.demo import DemoProvider
from tests.fake_telegram import ADMIN, ALICE, BOB, CAROL, Call, running_bot

Factory = Callable[..., Settings]


async def test_imagine_with_flags_in_private(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        asked = fake.user_sends("/imagine a red fox <b>&</b> --ar 16:9 --model nano-banana-pro")
        draft = await fake.wait_for("sendMessageDraft")  # the first sign: "Thinking..."
        assert draft.params.get("text", "") == ""
        photo = await fake.wait_for("sendPhoto")
        assert photo.reply_to == asked["message_id"]
        assert "a red fox <b>&</b>" in photo.text  # escaped for HTML, shown literally
        assert "nano-banana-pro · 1K · 16:9" in photo.text
        assert photo.button_texts == ["🔄 Reroll", "⬆ 2K (14)", "⬆ 4K (24)", "🎲 Variations",
                                      "✏️ Edit", "🗑 Delete"]
        assert all(len(b.encode()) <= 64 for b in photo.buttons)
        turn = await bot.turn(photo.message)
        assert (turn.model, turn.aspect, turn.prompt) == ("nano-banana-pro", "16:9",
                                                          "a red fox <b>&</b>")
        assert await bot.ledger(ALICE, ["reserve", "settle"]) == ["reserve", "settle"]
        await fake.expect_none("sendDocument")  # a 1K result needs no original file


async def test_imagine_at_bot_name_in_group(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        group = fake.group()
        fake.user_sends("/imagine@OtherBot not for us", chat=group)
        fake.user_sends("just chatting", chat=group)
        asked = fake.user_sends("/imagine@ImagineTestBot a castle", chat=group, user=BOB)
        photo = await fake.wait_for("sendPhoto", chat=group)
        assert photo.reply_to == asked["message_id"]
        assert (await bot.turn(photo.message)).actor_key == "telegram:1002"
        await fake.expect_none("sendPhoto")
        await fake.expect_none("sendMessage", lambda c: not c.text.startswith("🎨"))  # but the status


async def test_private_plain_text_is_a_prompt(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.user_sends("a lighthouse at dawn")
        photo = await fake.wait_for("sendPhoto")
        assert photo.text.startswith("a lighthouse at dawn")


async def test_private_plain_text_can_be_switched_off(settings_factory: Factory) -> None:
    async with running_bot(settings_factory, telegram={"private_plain_text": False}) as bot:
        fake = bot.fake
        fake.user_sends("a lighthouse at dawn")
        await fake.expect_none("sendPhoto")
        fake.user_sends("/imagine a lighthouse")
        await fake.wait_for("sendPhoto")


async def test_start_help_and_languages(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.user_sends("/start")
        start = await fake.wait_for("sendMessage")
        assert "Hi Alice!" in start.text and "/imagine <prompt>" in start.text
        fake.user_sends("/help", user=CAROL)
        help_zh = await fake.wait_for("sendMessage")
        assert "/imagine@ImagineTestBot" in help_zh.text
        assert "在群组中" in help_zh.text


async def test_command_menus_in_english_and_chinese(settings_factory: Factory) -> None:
    async with running_bot(settings_factory, bot={"admins": ["telegram:9001"]}) as bot:
        fake = bot.fake
        english = {c["command"]: c["description"] for c in fake.commands[("default:", "")]}
        chinese = {c["command"]: c["description"] for c in fake.commands[("default:", "zh")]}
        assert set(english) == set(chinese) == {"imagine", "describe", "history", "quota",
                                                "settings", "help", "forget"}
        assert english["quota"] == "Credits left and when they reset"
        assert chinese["quota"] == "剩余额度及重置时间"
        assert ("chat:9001", "") not in fake.commands  # the admin never wrote to the bot yet
        fake.private(ADMIN)
        await bot.restart()
        admin_menu = {c["command"] for c in fake.commands[("chat:9001", "")]}
        assert {"grant", "stats"} <= admin_menu


def _gaps(calls: list[Call]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(calls)]


async def test_progress_status_queue_and_other_chats_not_blocked(
        settings_factory: Factory) -> None:
    timing = Timing(action_interval=4.0, edit_interval=3.0, group_edit_interval=3.0, tick=0.1)
    async with running_bot(settings_factory, providers={"demo": DemoProvider(delay=3.6)},
                           timing=timing, limits={"global_concurrency": 1}) as bot:
        fake = bot.fake
        group = fake.group()
        fake.user_sends("/imagine a slow painting", chat=group)
        first_status = await fake.wait_for("sendMessage", chat=group)
        assert first_status.text.startswith("🎨 Generating…")
        fake.user_sends("/imagine another one", chat=group, user=BOB)
        queued = await fake.wait_for("sendMessage", lambda c: "Queued" in c.text, chat=group)
        assert queued.text == "⏳ Queued, position 1…"
        fake.user_sends("/quota", user=CAROL)  # another chat is answered at once
        carol = await fake.wait_for("sendMessage", lambda c: c.chat_id == CAROL.id, timeout=2.5)
        # Event order: CAROL is answered while the first job still runs (before its photo).
        assert not fake.calls_of("sendPhoto") or carol.at < fake.calls_of("sendPhoto")[0].at
        photos = [await fake.wait_for("sendPhoto", chat=group, timeout=15) for _ in range(2)]
        assert [p.text.split("\n")[0] for p in photos] == ["a slow painting", "another one"]
        edits = fake.calls_of("editMessageText")
        assert any("Generating" in e.text for e in edits)
        assert any(e.params["message_id"] == queued.message["message_id"] for e in edits)
        assert all(gap >= 2.9 for gap in _gaps(edits))  # one status edit per 3 s per chat
        await fake.wait_for("deleteMessage", lambda c: c.params["message_id"]
                            == first_status.message["message_id"])
        await fake.wait_for("deleteMessage", lambda c: c.params["message_id"]
                            == queued.message["message_id"])
