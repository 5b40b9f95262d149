"""The fake Bot API refuses what Telegram refuses, and the bot subscribes to what it handles."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from adapters.telegram.app import ALLOWED_UPDATES
from bot.config import Settings
from tests.fake_telegram import ALICE, PHOTO_MAX, FakeTelegram, png, running_bot
from tests.test_fit_budget_edges import padded

Factory = Callable[..., Settings]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """A started fake Bot API."""
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


async def call(fake: FakeTelegram, method: str, params: dict[str, Any] | None = None,
               files: dict[str, bytes] | None = None) -> dict[str, Any]:
    """One Bot API call, JSON or multipart as python-telegram-bot sends them."""
    url = f"{fake.base_url}{fake.token}/{method}"
    async with aiohttp.ClientSession() as http:
        if files:
            form = aiohttp.FormData()
            for key, value in (params or {}).items():
                form.add_field(key, value if isinstance(value, str) else json.dumps(value))
            for key, data in files.items():
                form.add_field(key, data, filename=f"{key}.bin")
            request = http.post(url, data=form)
        else:
            request = http.post(url, json=params or {})
        async with request as response:
            body: dict[str, Any] = await response.json()
            return body


async def keyboard_message(fake: FakeTelegram) -> dict[str, Any]:
    """A bot message to ALICE with one inline button, ``ib:go``."""
    fake.private(ALICE)
    markup = {"inline_keyboard": [[{"text": "go", "callback_data": "ib:go"}]]}
    answer = await call(fake, "sendMessage", {"chat_id": ALICE.id, "text": "pick",
                                              "reply_markup": markup})
    result: dict[str, Any] = answer["result"]
    return result


async def test_allowed_updates_persist_and_filter_polling(fake: FakeTelegram) -> None:
    """Only subscribed update types are created; the setting persists until changed."""
    fake.user_sends("hello")
    first = await call(fake, "getUpdates", {"allowed_updates": ["message"]})
    assert [u["message"]["text"] for u in first["result"]] == ["hello"]
    offset = first["result"][-1]["update_id"] + 1
    bot_msg = await keyboard_message(fake)
    fake.press(bot_msg, "ib:go")
    assert [next(k for k in u if k != "update_id") for u in fake.dropped] == ["callback_query"]
    later = await call(fake, "getUpdates", {"offset": offset, "timeout": 0})  # no list: kept
    assert later["result"] == []
    await call(fake, "getUpdates", {"offset": offset, "allowed_updates": []})  # [] = default
    fake.press(bot_msg, "ib:go")
    again = await call(fake, "getUpdates", {"offset": offset, "timeout": 0})
    assert [u["callback_query"]["data"] for u in again["result"]] == ["ib:go"]


async def test_allowed_updates_in_set_webhook(fake: FakeTelegram) -> None:
    """setWebhook takes the same subscription."""
    answer = await call(fake, "setWebhook", {"url": "http://127.0.0.1:9/hook",
                                             "allowed_updates": ["callback_query"]})
    assert answer["ok"] and fake.allowed_updates == ["callback_query"]
    assert fake.subscribed("callback_query") and not fake.subscribed("message")
    await call(fake, "deleteWebhook")
    fake.allowed_updates = None
    assert fake.subscribed("message") and not fake.subscribed("message_reaction")


async def test_photo_limit_is_ten_million_bytes(fake: FakeTelegram) -> None:
    """10,000,000 bytes are a photo; one byte more is refused (10 MB, not 10 MiB)."""
    fake.private(ALICE)
    ok = await call(fake, "sendPhoto", {"chat_id": str(ALICE.id)},
                    {"photo": padded("PNG", PHOTO_MAX)})
    assert ok["ok"], ok
    over = await call(fake, "sendPhoto", {"chat_id": str(ALICE.id)},
                      {"photo": padded("PNG", PHOTO_MAX + 1)})
    assert not over["ok"] and "PHOTO_SAVE_FILE_INVALID" in over["description"]


async def test_identical_caption_edit_is_not_modified(fake: FakeTelegram) -> None:
    """Editing a caption to what it already is fails, as text edits do."""
    fake.private(ALICE)
    sent = await call(fake, "sendPhoto", {"chat_id": str(ALICE.id), "caption": "a kite"},
                      {"photo": png()})
    mid = sent["result"]["message_id"]
    same = await call(fake, "editMessageCaption", {"chat_id": ALICE.id, "message_id": mid,
                                                   "caption": "a kite"})
    assert not same["ok"] and "message is not modified" in same["description"]
    changed = await call(fake, "editMessageCaption", {"chat_id": ALICE.id, "message_id": mid,
                                                      "caption": "a red kite"})
    assert changed["ok"]


async def test_album_mixing_photos_and_documents_is_refused(fake: FakeTelegram) -> None:
    """Documents group only with documents."""
    fake.private(ALICE)
    mixed = [{"type": "photo", "media": "attach://a"}, {"type": "document", "media": "attach://b"}]
    answer = await call(fake, "sendMediaGroup", {"chat_id": str(ALICE.id), "media": mixed},
                        {"a": png(), "b": png()})
    assert not answer["ok"] and "mixed" in answer["description"]
    same = [{"type": "document", "media": "attach://a"}, {"type": "document", "media": "attach://b"}]
    answer = await call(fake, "sendMediaGroup", {"chat_id": str(ALICE.id), "media": same},
                        {"a": png(), "b": png()})
    assert answer["ok"], answer


async def test_late_callback_answer_is_refused(fake: FakeTelegram) -> None:
    """A query answered after the deadline fails like Telegram's "query is too old"."""
    bot_msg = await keyboard_message(fake)
    on_time = fake.press(bot_msg, "ib:go")
    late = fake.press(bot_msg, "ib:go")
    fake._queries[late]["pressed"] -= fake.callback_deadline + 0.1  # pressed long ago
    assert (await call(fake, "answerCallbackQuery", {"callback_query_id": on_time}))["ok"]
    answer = await call(fake, "answerCallbackQuery", {"callback_query_id": late})
    assert not answer["ok"] and "query is too old" in answer["description"]


async def test_button_press_after_restart_with_the_configured_updates(
        settings_factory: Factory) -> None:
    """After a restart the bot subscribes again to what it handles, and a press works."""
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.user_sends("/imagine a lantern")
        result = await fake.wait_for("sendPhoto")
        await bot.restart()
        polls = [c for c in fake.calls_of("getUpdates") if "allowed_updates" in c.params]
        assert polls and all(c.params["allowed_updates"] == ALLOWED_UPDATES for c in polls)
        assert fake.subscribed("callback_query") and fake.subscribed("message")
        fake.press(result.message, "ib:reroll")
        await fake.wait_for("answerCallbackQuery")
        reroll = await fake.wait_for("sendPhoto")
        assert (await bot.turn(reroll.message)).kind == "reroll"
        assert fake.dropped == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_button_press_by_webhook_with_the_configured_updates(
        settings_factory: Factory) -> None:
    """In webhook mode the subscription is set with setWebhook, and a press arrives."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/telegram/hook"
    async with running_bot(settings_factory, telegram={
            "webhook_url": url, "webhook_listen": f"127.0.0.1:{port}"}) as bot:
        fake = bot.fake
        assert fake.allowed_updates == ALLOWED_UPDATES
        fake.user_sends("/imagine a kite")
        result = await fake.wait_for("sendPhoto")
        fake.press(result.message, "ib:reroll")
        reroll = await fake.wait_for("sendPhoto")
        assert (await bot.turn(reroll.message)).kind == "reroll"
        assert fake.dropped == []
