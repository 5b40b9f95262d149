"""Telegram reply-to-edit: chains in a supergroup, branches, extra references, who pays."""

from __future__ import annotations

from collections.abc import Callable

from bot.config import Settings
from tests.fake_telegram import ALICE, BOB, png, running_bot

Factory = Callable[..., Settings]


async def test_reply_edit_chain_of_three_turns_in_a_supergroup(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        group = fake.group()
        fake.user_sends("/imagine@ImagineTestBot a small house", chat=group)
        first = await fake.wait_for("sendPhoto", chat=group)
        asked = fake.user_sends("add a red door", chat=group, reply_to=first.message)
        second = await fake.wait_for("sendPhoto", chat=group)
        assert second.reply_to == asked["message_id"]
        fake.user_sends("make it night", chat=group, reply_to=second.message)
        third = await fake.wait_for("sendPhoto", chat=group)
        t1, t2, t3 = [await bot.turn(c.message) for c in (first, second, third)]
        chain = await bot.c.conversations.chain(t3.id)
        assert [t.id for t in chain] == [t1.id, t2.id, t3.id]
        assert (t2.parent_id, t3.parent_id, t3.kind) == (t1.id, t2.id, "edit")
        assert [t.prompt for t in chain] == ["a small house", "add a red door", "make it night"]
        # Anyone may continue the thread; the one who asks pays.
        fake.user_sends("add snow", chat=group, reply_to=third.message, user=BOB)
        fourth = await fake.wait_for("sendPhoto", chat=group)
        t4 = await bot.turn(fourth.message)
        assert (t4.parent_id, t4.actor_key) == (t3.id, "telegram:1002")
        assert await bot.ledger(BOB, ["reserve", "settle"]) == ["reserve", "settle"]
        assert (await bot.ledger(ALICE)).count("settle") == 3


async def test_replying_to_an_older_result_branches(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        fake.user_sends("/imagine a boat")
        first = await fake.wait_for("sendPhoto")
        fake.user_sends("paint it blue", reply_to=first.message)
        second = await fake.wait_for("sendPhoto")
        fake.user_sends("paint it green instead", reply_to=first.message)
        branch = await fake.wait_for("sendPhoto")
        t1, t2, t3 = [await bot.turn(c.message) for c in (first, second, branch)]
        assert t2.parent_id == t3.parent_id == t1.id


async def test_reply_with_an_album_adds_references(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        group = fake.group()
        fake.user_sends("/imagine an empty room", chat=group)
        result = await fake.wait_for("sendPhoto", chat=group)
        for i in range(2):
            fake.user_sends(photo=png(color=(10, i * 90, 200)), chat=group, media_group_id="R",
                            reply_to=result.message, caption="put these in" if i == 0 else None)
        edited = await fake.wait_for("sendPhoto", chat=group)
        parent = await bot.turn(result.message)
        turn = await bot.turn(edited.message)
        assert (turn.parent_id, len(turn.input_hashes)) == (parent.id, 2)
        await fake.expect_none("sendPhoto")


async def test_plain_replies_to_other_messages_are_ignored_in_groups(
        settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        group = fake.group()
        fake.user_sends("/help", chat=group)
        help_text = await fake.wait_for("sendMessage", chat=group)
        fake.user_sends("thanks!", chat=group, reply_to=help_text.message)
        someone = fake.user_sends("hello", chat=group, user=BOB)
        fake.user_sends("hi bob", chat=group, reply_to=someone)
        await fake.expect_none("sendMessage")
        await fake.expect_none("sendPhoto")


async def test_imagine_replying_to_a_text_uses_it_as_the_prompt(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        group = fake.group()
        idea = fake.user_sends("a cat wearing a tiny crown", chat=group, user=BOB)
        fake.user_sends("/imagine", chat=group, reply_to=idea)
        photo = await fake.wait_for("sendPhoto", chat=group)
        assert (await bot.turn(photo.message)).prompt == "a cat wearing a tiny crown"


async def test_forum_topics(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake = bot.fake
        group = fake.group()
        topic = fake.topic(group, "Art")
        asked = fake.user_sends("/imagine a quiet harbour", chat=group, thread_id=topic)
        photo = await fake.wait_for("sendPhoto", chat=group)
        shown = [c for c in fake.calls if c.chat_id == group["id"] and c.method.startswith("send")]
        assert all(c.params.get("message_thread_id") == topic for c in shown), shown
        assert photo.reply_to == asked["message_id"]
        turn = await bot.turn(photo.message)
        assert (turn.kind, turn.input_hashes, turn.parent_id) == ("imagine", (), None)
        fake.user_sends("just talking in the topic", chat=group, thread_id=topic)
        await fake.expect_none("sendMessage", lambda c: not c.text.startswith("🎨"))  # but the status
        fake.user_sends("make it stormy", chat=group, thread_id=topic, reply_to=photo.message)
        edited = await fake.wait_for("sendPhoto", chat=group)
        assert (await bot.turn(edited.message)).parent_id == turn.id
