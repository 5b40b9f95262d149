"""Edits on Discord: the "Edit image" menu and its modal, the Edit button, and reply chains."""

from __future__ import annotations

from collections.abc import Callable

from bot.config import Settings
from tests.fake_discord import (
    MESSAGE_CONTENT_INTENT,
    FakeDiscord,
    FakeMessage,
    bound_turn,
    discord_settings,
    png,
    result_of,
    running_bot,
)

SettingsFactory = Callable[..., Settings]


async def reply_result(fake: FakeDiscord, trigger: FakeMessage) -> FakeMessage:
    """The bot's image reply to ``trigger``."""
    event = await fake.wait_for("message", lambda e: e.message is not None
                                and e.message.reference is trigger and bool(e.message.attachments))
    assert event.message is not None
    return event.message


async def test_context_menu_edit_of_someones_photo_starts_a_new_conversation(
        settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        kim, lee = fake.user("kim"), fake.user("lee")
        # Lee's plain message (no mention): the bot receives it without content, as Discord
        # does without the message-content intent, and ignores it.
        photo = await fake.user_message("my cat", user=lee, attachments=[png()],
                                        mention_bot=False)
        menu = await fake.context_menu("Edit image", photo, user=kim)
        await fake.wait_for("modal", lambda e: e.interaction is menu)
        assert menu.modal is not None and menu.modal["title"] == "Edit image"
        submit = await fake.submit_modal(menu, {"instruction": "make it a watercolor"})
        result = await result_of(fake, submit)
        turn = await bound_turn(bot.core, result)
        assert turn.parent_id is None and len(turn.input_hashes) == 1
        assert turn.prompt == "make it a watercolor" and turn.kind == "edit"
        assert result.pings() == {f"user:{kim.id}"}
        assert not fake.errors


async def test_context_menu_on_a_result_continues_and_needs_an_image(
        settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        mia = fake.user("mia")
        first = await result_of(fake, await fake.slash("imagine", prompt="a castle", user=mia))
        parent = await bound_turn(bot.core, first)
        menu = await fake.context_menu("Edit image", first, user=mia, locale="zh-CN")
        await fake.wait_for("modal", lambda e: e.interaction is menu)
        assert menu.modal is not None and menu.modal["title"] == "编辑图片"
        submit = await fake.submit_modal(menu, {"instruction": "at night"}, locale="zh-CN")
        second = await result_of(fake, submit)
        child = await bound_turn(bot.core, second)
        assert child.parent_id == parent.id and child.input_hashes == ()
        # A message without any image cannot be edited: a private explanation.
        text_only = await fake.user_message("hello", user=mia, mention_bot=False)
        menu2 = await fake.context_menu("Edit image", text_only, user=mia)
        ack = await fake.wait_for("message", lambda e: e.interaction is menu2)
        assert ack.message is not None and ack.message.ephemeral
        assert "Reply to an image" in ack.message.text
        assert not fake.errors


async def test_edit_button_opens_the_modal_and_continues(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        ned = fake.user("ned")
        first = await result_of(fake, await fake.slash("imagine", prompt="a robot", user=ned))
        parent = await bound_turn(bot.core, first)
        edit_id = next(cid for _, cid in first.buttons() if cid.startswith("ib:edit:"))
        press = await fake.press(edit_id, user=ned)
        await fake.wait_for("modal", lambda e: e.interaction is press)
        submit = await fake.submit_modal(press, {"instruction": "paint it gold --ar 3:2"})
        second = await result_of(fake, submit)
        child = await bound_turn(bot.core, second)
        assert child.parent_id == parent.id and child.aspect == "3:2"
        assert not fake.errors


async def test_three_turn_reply_chain_with_an_extra_reference_and_a_branch(
        settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        ola = fake.user("ola")
        first = await result_of(fake, await fake.slash("imagine", prompt="a garden", user=ola))
        turn_a = await bound_turn(bot.core, first)

        ask_b = await fake.user_message("add a fountain", user=ola, reply_to=first,
                                        attachments=[png(color=(0, 200, 0))])
        second = await reply_result(fake, ask_b)
        turn_b = await bound_turn(bot.core, second)
        assert second.pings() == {f"user:{ola.id}"}  # the reply pings the requester only
        assert len(turn_b.input_hashes) == 1  # the attachment became an extra reference

        ask_c = await fake.user_message(f"<@{fake.bot.id}> now in winter", user=ola,
                                        reply_to=second)
        third = await reply_result(fake, ask_c)
        turn_c = await bound_turn(bot.core, third)
        assert turn_c.prompt == "now in winter"
        chain = await bot.core.conversations.chain(turn_c.id)
        assert [t.id for t in chain] == [turn_a.id, turn_b.id, turn_c.id]

        # Replying to the older result branches from it.
        ask_d = await fake.user_message("make it autumn", user=ola, reply_to=first)
        branch = await bound_turn(bot.core, await reply_result(fake, ask_d))
        assert branch.parent_id == turn_a.id

        # Status messages are gone; only the results (and the user's messages) remain.
        bot_texts = [m for m in fake.visible(channel=fake.channel)
                     if m.author == fake.bot and not m.attachments]
        assert bot_texts == []
        assert not fake.errors


async def test_replies_that_do_not_address_the_bot_are_ignored(
        settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(fake, discord_settings(settings_factory, fake)):
        pat = fake.user("pat")
        first = await result_of(fake, await fake.slash("imagine", prompt="a tree", user=pat))
        mark = fake.mark()
        await fake.user_message("nice!", user=pat, reply_to=first, mention_bot=False, ping=False)
        ask = await fake.user_message("make it blue", user=pat, reply_to=first)
        await reply_result(fake, ask)
        replies = [e for e in fake.events[mark:] if e.kind == "message"
                   and e.message is not None and e.message.author == fake.bot]
        assert all(e.message is not None and e.message.reference is ask for e in replies)


async def test_reply_edit_errors_are_explained(settings_factory: SettingsFactory) -> None:
    # With the message-content intent the bot sees that the message has no image; without it
    # (tests/test_discord_intents.py) it points at the "Edit image" menu instead.
    async with FakeDiscord(portal_intents=MESSAGE_CONTENT_INTENT) as fake, running_bot(
            fake, discord_settings(settings_factory, fake,
                                   discord={"message_content_intent": True})):
        quin = fake.user("quin")
        words = await fake.user_message("no image here", user=quin, mention_bot=False)
        ask = await fake.user_message("edit this", user=quin, reply_to=words)
        event = await fake.wait_for("message", lambda e: e.message is not None
                                    and e.message.reference is ask)
        assert event.message is not None and "Reply to an image" in event.message.text
        assert event.message.pings() == set()


async def test_context_menu_edit_of_a_link_preview_image(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        rob = fake.user("rob")
        link = await fake.user_message("https://example.com/cat.png", user=rob,
                                       mention_bot=False, embed_images=[png(96, 64)])
        menu = await fake.context_menu("Edit image", link, user=rob)
        await fake.wait_for("modal", lambda e: e.interaction is menu)
        result = await result_of(fake, await fake.submit_modal(menu, {"instruction": "sepia"}))
        turn = await bound_turn(bot.core, result)
        assert len(turn.input_hashes) == 1 and turn.parent_id is None


async def test_replies_in_dms_need_no_mention(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        sue = fake.user("sue")
        dm = fake.dm(sue)
        first = await result_of(fake, await fake.slash("imagine", prompt="a kite", user=sue,
                                                       channel=dm))
        parent = await bound_turn(bot.core, first)
        ask = await fake.user_message("make it red", user=sue, reply_to=first, mention_bot=False)
        child = await bound_turn(bot.core, await reply_result(fake, ask))
        assert child.parent_id == parent.id and child.chat_key == f"discord:{dm.id}"
