"""The fake Bot API enforces Telegram's limits (checked with a plain python-telegram-bot Bot)."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, RetryAfter, TelegramError

from adapters.telegram import TelegramAdapter
from bot.bootstrap import build_core
from bot.config import Settings
from bot.errors import ConfigError
from bot.messages import LOCALES, Messages
from tests.fake_telegram import ALICE, FakeTelegram, png
from tests.fake_upstream import jpeg
from tests.telegram_flood import FloodRules


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as b:
        fake.private(ALICE)
        yield b


async def test_limits_are_enforced(bot: Bot) -> None:
    chat = ALICE.id
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: bot.send_photo(chat, png(), caption="x" * 1025), "caption is too long"),
        (lambda: bot.send_photo(chat, jpeg(9000, 1001)), "PHOTO_INVALID_DIMENSIONS"),
        (lambda: bot.send_photo(chat, jpeg(2100, 100)), "PHOTO_INVALID_DIMENSIONS"),
        (lambda: bot.send_photo(chat, b"\xff\xd8\xff" + b"\0" * (10 * 1024 * 1024)),
         "PHOTO_SAVE_FILE_INVALID"),
        (lambda: bot.send_message(chat, "a <b>bold", parse_mode="HTML"), "can't parse entities"),
        (lambda: bot.send_message(chat, "fish & chips", parse_mode="HTML"),
         "can't parse entities"),
        (lambda: bot.send_message(chat, "x", reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("b", callback_data="d" * 65)]])), "BUTTON_DATA_INVALID"),
        (lambda: bot.send_message(chat, "x" * 4097), "message is too long"),
        (lambda: bot.send_message(chat, "x", reply_to_message_id=999), "replied not found"),
        (lambda: bot.send_message(42, "x"), "chat not found"),
        (lambda: bot.delete_message(chat, 999), "message to delete not found"),
    ]
    for make, expected in cases:
        with pytest.raises(BadRequest, match=f"(?i){expected}"):
            await make()  # type: ignore[misc]
    with pytest.raises(TelegramError):
        await bot.send_document(chat, b"\0" * (50 * 1024 * 1024 + 1), filename="big.bin")
    sent = await bot.send_message(chat, "fish &amp; <b>chips</b>", parse_mode="HTML")
    assert sent.text == "fish & chips"
    with pytest.raises(BadRequest, match=r"(?i)not modified"):
        await bot.edit_message_text("fish &amp; <b>chips</b>", chat, sent.message_id,
                                    parse_mode="HTML")


async def test_updates_files_and_429(fake: FakeTelegram, bot: Bot) -> None:
    message = fake.user_sends(photo=png(), caption="/imagine hi")
    updates = await bot.get_updates(timeout=1)
    assert [u.message.message_id for u in updates if u.message] == [message["message_id"]]
    got = updates[0].message
    assert got is not None and got.caption_entities[0].type == "bot_command"
    assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0) == ()
    file = await bot.get_file(got.photo[-1].file_id)
    assert bytes(await file.download_as_bytearray()) == png()
    fake.fail_next("sendChatAction", retry_after=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PTB warns that RetryAfter.retry_after changes in v23
        with pytest.raises(RetryAfter):
            await bot.send_chat_action(ALICE.id, "upload_photo")
    assert await bot.send_chat_action(ALICE.id, "upload_photo")
    started = asyncio.get_running_loop().time()
    assert await bot.get_updates(timeout=1) == ()  # long poll waits for the timeout
    assert asyncio.get_running_loop().time() - started >= 0.9


async def test_drafts_follow_the_bot_api(fake: FakeTelegram, bot: Bot) -> None:
    """sendMessageDraft as https://core.telegram.org/bots/api#sendmessagedraft has it.

    "Unique identifier for the target private chat"; draft_id "must be non-zero"; text "0-4096
    characters after entities parsing. Pass an empty text to show a "Thinking..." placeholder"
    (Bot API 10.0); "a temporary 30-second preview". Not a message: the sending limits (the Bots
    FAQ counts messages) leave it alone, and the bot's next message in the chat replaces it.
    """
    group = fake.group()
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: bot.send_message_draft(group["id"], 7, "x"), "TEXTDRAFT_PEER_INVALID"),
        (lambda: bot.send_message_draft(ALICE.id, 0, "x"), "DRAFT_ID_INVALID"),
        (lambda: bot.send_message_draft(ALICE.id, 7, "x" * 4097), "TEXT_TOO_LONG"),
        (lambda: bot.send_message_draft(ALICE.id, 7, "a <b>bold", parse_mode="HTML"),
         "can't parse entities"),
        (lambda: bot.send_message_draft(42, 7, "x"), "chat not found"),
    ]
    for make, expected in cases:
        with pytest.raises(BadRequest, match=f"(?i){expected}"):
            await make()  # type: ignore[misc]
    async with aiohttp.ClientSession() as http, http.post(  # a JSON true is not an Integer
            f"{fake.base_url}{fake.token}/sendMessageDraft",
            json={"chat_id": ALICE.id, "draft_id": True}) as resp:
        assert resp.status == 400 and "DRAFT_ID" in (await resp.json())["description"]
    assert fake.drafts.visible(ALICE.id) is None  # nothing refused was shown
    now = [1000.0]
    fake.drafts.clock = lambda: now[0]
    fake.flood = FloodRules(rate=1, burst=1, chat_rate=1, chat_burst=1)
    assert await bot.send_message_draft(ALICE.id, 7)  # no text: "Thinking..."
    assert fake.drafts.visible(ALICE.id).text == ""  # type: ignore[union-attr]
    for n in range(20):  # far over every sending limit: drafts are not messages
        assert await bot.send_message_draft(ALICE.id, 7, f"step {n}")
    assert fake.drafts.visible(ALICE.id).text == "step 19"  # type: ignore[union-attr]
    # 4096 characters after entities parsing (the tags do not count); a new id replaces the draft
    assert await bot.send_message_draft(ALICE.id, 8, f"<b>{'x' * 4096}</b>", parse_mode="HTML")
    assert fake.drafts.visible(ALICE.id).draft_id == 8  # type: ignore[union-attr]
    now[0] += 30.5  # its 30 s are over: the client dropped it
    assert fake.drafts.visible(ALICE.id) is None
    assert await bot.send_message_draft(ALICE.id, 8, "again")
    await bot.send_message(ALICE.id, "the answer")  # the bot's message replaces the draft
    assert fake.drafts.visible(ALICE.id) is None and fake.flood.refused == {}


async def test_a_rejected_token_is_a_config_error(
        fake: FakeTelegram, settings_factory: Callable[..., Settings]) -> None:
    core = build_core(settings_factory(telegram={"base_url": fake.base_url}))
    await core.start()
    try:
        with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN"):
            await TelegramAdapter(core.api, token="1:wrong").run(asyncio.Event())
    finally:
        await core.stop(grace=0)


def test_catalogs_have_the_telegram_keys() -> None:
    messages = Messages()
    keys = [{k for k in messages.keys(loc) if k.startswith("telegram.")} for loc in LOCALES]
    assert keys[0] and all(k == keys[0] for k in keys)
