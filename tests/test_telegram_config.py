"""/config in a Telegram forum group (issue 17), on the fake Bot API.

Admins are who getChatMember says they are: a member named "Admin" is refused. A group that keeps
the bot to one topic tells members in other topics where it works; a group that allows only
nano-banana-2.1 refuses ``--model nano-banana-pro`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.config import Settings
from bot.messages import load_catalog
from tests.fake_telegram import ALICE, BOB, ApiError, FakeUser, running_bot

Factory = Callable[..., Settings]
EN = load_catalog("en")
FORGER = FakeUser(1666, "Admin")  # calls itself an admin; Telegram says "member"
GROUP_ID = -1001234567890

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


def members(statuses: dict[int, str], asked: list[int]) -> Callable[..., Any]:
    """A getChatMember for the fake: the status of each user in the group, as Telegram keeps it."""
    async def get_chat_member(p: dict[str, Any], f: dict[str, bytes]) -> Any:
        user_id = int(p["user_id"])
        asked.append(user_id)
        if int(p["chat_id"]) != GROUP_ID or user_id not in statuses:
            raise ApiError(400, "Bad Request: member not found")
        user = {"id": user_id, "is_bot": False, "first_name": str(user_id)}
        status = statuses[user_id]
        return {"status": status, "user": user, **({"is_anonymous": False}
                                                   if status == "creator" else {})}
    return get_chat_member


async def test_config_in_a_forum_group(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        asked: list[int] = []
        fake._m_getChatMember = members(  # type: ignore[attr-defined]
            {ALICE.id: "creator", BOB.id: "member", FORGER.id: "member"}, asked)
        admins_menu = {c["command"] for c in fake.commands[("all_chat_administrators:", "")]}
        assert "config" in admins_menu and "config" not in {
            c["command"] for c in fake.commands[("default:", "")]}
        group = fake.group(GROUP_ID)
        art = fake.topic(group, "Art")
        chat = fake.topic(group, "Chat")

        # A member cannot change settings; neither can one who calls himself "Admin".
        for user in (BOB, FORGER):
            fake.user_sends("/config models nano-banana-2.1", user=user, chat=group,
                            thread_id=art)
            refused = await fake.wait_for("sendMessage", chat=group)
            assert refused.text == EN["error.not_allowed"]
        assert asked == [BOB.id, FORGER.id]  # asked of Telegram, not taken from the message

        # The group's owner narrows the models and keeps the bot to the Art topic.
        fake.user_sends("/config models nano-banana-2.1", user=ALICE, chat=group, thread_id=art)
        saved = await fake.wait_for("sendMessage", chat=group)
        assert saved.text.startswith(EN["group.saved"])
        assert "models: nano-banana-2.1" in saved.text
        fake.user_sends("/config channels here", user=ALICE, chat=group, thread_id=art)
        saved = await fake.wait_for("sendMessage", chat=group)
        assert f"channels: {art}" in saved.text

        # Anyone may read the settings.
        fake.user_sends("/config", user=BOB, chat=group, thread_id=chat)
        shown = await fake.wait_for("sendMessage", chat=group)
        assert shown.text.startswith(EN["group.title"])

        # A member in another topic is told where the bot works.
        fake.user_sends("/imagine a lighthouse", user=BOB, chat=group, thread_id=chat)
        told = await fake.wait_for("sendMessage", chat=group)
        assert told.text.startswith(EN["error.not_here"].split("{")[0])
        assert f"https://t.me/c/1234567890/{art}" in told.text

        # In Art: the expensive model is refused with the reason, the allowed one draws.
        fake.user_sends("/imagine a lighthouse --model nano-banana-pro", user=BOB, chat=group,
                        thread_id=art)
        told = await fake.wait_for("sendMessage", chat=group)
        assert told.text == EN["error.group_option"].format(
            option="model", allowed="nano-banana-2.1", value="nano-banana-pro")
        fake.user_sends("/imagine a lighthouse", user=BOB, chat=group, thread_id=art)
        photo = await fake.wait_for("sendPhoto", chat=group)
        assert "nano-banana-2.1" in photo.text
        assert await bot.ledger(BOB, ["reserve", "settle"]) == ["reserve", "settle"]


async def test_reply_edits_can_be_turned_off(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake._m_getChatMember = members({ALICE.id: "creator"}, [])  # type: ignore[attr-defined]
        group = fake.group(GROUP_ID)
        fake.user_sends("/imagine a lighthouse", user=BOB, chat=group)
        photo = await fake.wait_for("sendPhoto", chat=group)
        fake.user_sends("/config reply-edits off", user=ALICE, chat=group)
        # In a group the job's status message comes first (issue 21); the answer is the other.
        said = await fake.wait_for("sendMessage", lambda c: "Generating" not in c.text, chat=group)
        assert "reply-edits: off" in said.text
        fake.user_sends("make it night", user=BOB, chat=group, reply_to=photo.message)
        await fake.expect_none("sendPhoto")
        fake.user_sends("/config reply-edits on", user=ALICE, chat=group)
        await fake.wait_for("sendMessage", lambda c: "reply-edits: on" in c.text, chat=group)
        fake.user_sends("make it night", user=BOB, chat=group, reply_to=photo.message)
        edited = await fake.wait_for("sendPhoto", chat=group)
        assert (await bot.turn(edited.message)).parent_id is not None
