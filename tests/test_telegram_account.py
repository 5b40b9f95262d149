"""Telegram account commands: /quota, /settings, /forget, admin commands, access rules."""

from __future__ import annotations

import socket
from collections.abc import Callable

import aiohttp

from adapters.telegram.webhook import SECRET_HEADER
from bot.config import Settings
from tests.fake_telegram import ADMIN, ALICE, BOB, CAROL, running_bot

Factory = Callable[..., Settings]
ADMINS = {"admins": ["telegram:9001"]}


async def test_quota_command(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.user_sends("/quota")
        quota = await fake.wait_for("sendMessage")
        assert quota.text.startswith("Your credits\nyour daily allowance: 100 of 100 left")
        assert "nano-banana-2.1: 1K 4, 2K 6, 4K 12" in quota.text


async def test_settings_menu_saves_choices(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        group = fake.group()
        fake.user_sends("/settings", chat=group)
        menu = await fake.wait_for("sendMessage")
        assert menu.text == ("Your defaults: model nano-banana-2.1, size 1K, aspect 1:1, "
                             "language English, search off\nImages per request 1, style none")
        assert menu.button_texts == ["Model", "Size", "Aspect", "Language", "Google Search",
                                     "Images per request", "Style"]
        message = menu.message
        fake.press(message, "st:1001:open:model")
        choices = await fake.wait_for("editMessageText")
        assert choices.text == "Choose: Model"
        assert "✓ " not in "".join(choices.button_texts)
        fake.press(message, "st:1001:set:model=nano-banana-2", user=BOB)  # not Bob's menu
        refused = await fake.wait_for("answerCallbackQuery",
                                      lambda c: "requester" in c.params.get("text", ""))
        assert refused.params["text"] == "Only the requester (or an admin) can do that."
        fake.press(message, "st:1001:set:model=nano-banana-pro")
        saved = await fake.wait_for("editMessageText")
        assert saved.text.startswith("Saved: Model = nano-banana-pro\n")
        # The rest in Alice's private chat: the adapter keeps a group's 20 messages a minute
        # (Telegram's limit), which would space every further edit 3 s apart here.
        fake.user_sends("/settings")
        message = (await fake.wait_for("sendMessage", chat=fake.private(ALICE))).message
        fake.press(message, "st:1001:open:size")
        sizes = await fake.wait_for("editMessageText")
        assert {"1K", "2K", "4K"} <= set(sizes.button_texts)
        fake.press(message, "st:1001:set:size=2K")
        await fake.wait_for("editMessageText", lambda c: "Size = 2K" in c.text)
        fake.press(message, "st:1001:open:aspect")
        await fake.wait_for("editMessageText")
        fake.press(message, "st:1001:set:aspect=16:9")
        await fake.wait_for("editMessageText", lambda c: "Aspect = 16:9" in c.text)
        fake.press(message, "st:1001:open:search")
        await fake.wait_for("editMessageText")
        fake.press(message, "st:1001:set:search=on")  # nano-banana-pro offers Google Search
        await fake.wait_for("editMessageText", lambda c: "Google Search = on" in c.text)
        saved_settings = await bot.c.prefs.get(ALICE.actor)
        assert (saved_settings.model, saved_settings.size, saved_settings.aspect,
                saved_settings.search) == ("nano-banana-pro", "2K", "16:9", "on")
        fake.user_sends("/imagine a dune")
        photo = await fake.wait_for("sendPhoto")
        assert "nano-banana-pro · 2K · 16:9" in photo.text
        fake.press(message, "st:1001:open:locale")
        await fake.wait_for("editMessageText")
        fake.press(message, "st:1001:set:locale=zh-Hant")
        chinese = await fake.wait_for("editMessageText")
        assert chinese.text.startswith("已儲存") or "繁體中文" in chinese.text
        assert (await bot.c.prefs.get(ALICE.actor)).locale == "zh-Hant"
        fake.press(message, "st:1001:open:size")
        await fake.wait_for("editMessageText")
        fake.press(message, "st:1001:set:size=*")
        await fake.wait_for("editMessageText")
        assert (await bot.c.prefs.get(ALICE.actor)).size is None


async def test_forget_asks_first(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.user_sends("/imagine a memory")
        result = await fake.wait_for("sendPhoto")
        turn = await bot.turn(result.message)
        fake.user_sends("/forget")
        ask = await fake.wait_for("sendMessage")
        assert ask.text.startswith("Delete all your stored images and conversations?")
        fake.press(ask.message, "fg:1001:no")
        cancelled = await fake.wait_for("editMessageText")
        assert cancelled.text == "Nothing was deleted."
        assert await bot.c.conversations.get(turn.id) is not None
        group = fake.group()
        fake.user_sends("/forget", chat=group)
        ask = await fake.wait_for("sendMessage")
        fake.press(ask.message, "fg:1001:yes", user=BOB)
        await fake.wait_for("answerCallbackQuery", lambda c: "requester" in c.params.get("text", ""))
        fake.press(ask.message, "fg:1001:yes")
        done = await fake.wait_for("editMessageText")
        assert done.text == "Deleted 1 of your conversations and their images."
        assert await bot.c.conversations.get(turn.id) is None


async def test_admin_grant_stats_and_ban(settings_factory: Factory) -> None:
    async with running_bot(settings_factory, bot=ADMINS) as bot:
        fake = bot.fake
        fake.user_sends("/grant 1001 50", user=ALICE)
        assert (await fake.wait_for("sendMessage")).text == "You can't do that here."
        fake.user_sends("/grant 1001 50", user=ADMIN)
        granted = await fake.wait_for("sendMessage")
        assert granted.text == "Granted 50 credits to telegram:1001; their bonus is now 50."
        group = fake.group()
        bobs = fake.user_sends("hello", chat=group, user=BOB)
        fake.user_sends("/grant 7", chat=group, user=ADMIN, reply_to=bobs)
        assert "telegram:1002" in (await fake.wait_for("sendMessage")).text
        fake.user_sends("/grant", user=ADMIN)
        assert (await fake.wait_for("sendMessage")).text.startswith("Usage: /grant")
        fake.user_sends("/quota")
        assert "Bonus credits: 50" in (await fake.wait_for("sendMessage")).text
        fake.user_sends("/imagine a trophy")
        await fake.wait_for("sendPhoto")
        # The credits settle once Telegram has answered the upload: /stats counts them after.
        assert await bot.ledger(ALICE, ["grant", "reserve", "settle"]) == [
            "grant", "reserve", "settle"]
        fake.user_sends("/stats", user=ADMIN)
        stats = await fake.wait_for("sendMessage")
        assert stats.text.startswith("Today: 1 images, 4 credits")
        fake.user_sends("/ban 1002", user=ADMIN)
        assert (await fake.wait_for("sendMessage")).text == "telegram:1002 is now blocked."
        fake.user_sends("/imagine a loophole", user=BOB)
        told = await fake.wait_for("sendMessage")
        assert told.text == "You have been blocked from using this bot."
        fake.user_sends("/imagine again", user=BOB)
        fake.user_sends("another try", user=BOB)
        await fake.expect_none("sendMessage")
        await fake.expect_none("sendPhoto")
        assert await bot.ledger(BOB) == ["grant"]


async def test_allowed_chats(settings_factory: Factory) -> None:
    allowed = -1000000000111
    async with running_bot(settings_factory, bot=ADMINS,
                           telegram={"allowed_chats": [allowed]}) as bot:
        fake = bot.fake
        other = fake.group(-1000000000222, "Elsewhere")
        fake.user_sends("/imagine a secret", chat=other)
        refused = await fake.wait_for("sendMessage", chat=other)
        assert refused.text == "You can't do that here."
        fake.user_sends("/quota")
        assert (await fake.wait_for("sendMessage")).text == "You can't do that here."
        fake.user_sends("a plain prompt")
        await fake.expect_none("sendMessage")
        fake.user_sends("/imagine a welcome", chat=fake.group(allowed, "Home"))
        await fake.wait_for("sendPhoto")
        fake.user_sends("/imagine admins go anywhere", chat=other, user=ADMIN)
        await fake.wait_for("sendPhoto", chat=other)
        await fake.expect_none("sendPhoto")


async def test_group_pool_charges_each_requester(settings_factory: Factory) -> None:
    async with running_bot(settings_factory, quota={"chat_daily_credits": 8}) as bot:
        fake = bot.fake
        group = fake.group()
        fake.user_sends("/imagine one", chat=group, user=ALICE)
        await fake.wait_for("sendPhoto")
        fake.user_sends("/imagine two", chat=group, user=BOB)
        await fake.wait_for("sendPhoto")
        fake.user_sends("/imagine three", chat=group, user=CAROL)
        empty = await fake.wait_for("sendMessage", lambda c: "Generating" not in c.text
                                    and "生成" not in c.text)
        assert empty.text.startswith("额度不足：本次需要 4 点，本群每日共享额度剩余 0 点。")
        assert await bot.ledger(ALICE) == await bot.ledger(BOB) == ["reserve", "settle"]
        assert await bot.ledger(CAROL) == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_webhook_mode(settings_factory: Factory) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/telegram/hook"
    async with running_bot(settings_factory, telegram={
            "webhook_url": url, "webhook_listen": f"127.0.0.1:{port}"}) as bot:
        fake = bot.fake
        assert fake.webhook is not None and fake.webhook["url"] == url
        fake.user_sends("/imagine delivered by webhook")
        photo = await fake.wait_for("sendPhoto")
        assert photo.text.startswith("delivered by webhook")
        async with aiohttp.ClientSession() as session, session.post(
                url, json={"update_id": 1}, headers={SECRET_HEADER: "wrong"}) as response:
            assert response.status == 403
