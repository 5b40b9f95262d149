"""Reply-to-edit with and without Discord's privileged message-content intent (issue 19.6).

Since 2026-06-10 the intent is reviewed once an app reaches 10,000 users and re-reviewed every
year (https://discord.com/developers/docs/gateway/getting-started-with-privileged-intent-review);
the bot does without it by default. The fake withholds content the way the documentation says
(https://discord.com/developers/docs/gateway/you-might-not-need-a-privileged-intent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from bot.bootstrap import build_core
from bot.config import Settings
from bot.errors import ConfigError
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
INTENT_ON = {"discord": {"message_content_intent": True}}


async def answer_to(fake: FakeDiscord, ask: FakeMessage, *, images: bool) -> FakeMessage:
    """The bot's reply to ``ask``: a result (``images``) or a text."""
    event = await fake.wait_for("message", lambda e: e.message is not None
                                and e.message.reference is ask
                                and bool(e.message.attachments) is images, timeout=15)
    assert event.message is not None
    return event.message


async def credits_moved(bot: Any, user_id: int) -> list[str]:
    """The kinds of the user's ledger rows."""
    return [e.kind for e in await bot.core.store.ledger(f"discord:{user_id}")]


async def test_without_the_intent_a_ping_only_reply_to_a_slash_result_is_told_how(
        settings_factory: SettingsFactory) -> None:
    """Discord withholds it ("not ... replies to slash command responses"): a hint, no charge."""
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        ann = fake.user("ann")
        first = await result_of(fake, await fake.slash("imagine", prompt="a pier", user=ann))
        assert fake.intents & MESSAGE_CONTENT_INTENT == 0
        ask = await fake.user_message("make it foggy", user=ann, reply_to=first,
                                      mention_bot=False)
        hint = await answer_to(fake, ask, images=False)
        assert "mention me" in hint.text and "@Imagine" in hint.text and "Edit" in hint.text
        assert hint.pings() == set()
        assert await credits_moved(bot, ann.id) == ["reserve", "settle"]
        # Mentioning the bot in the reply is enough: Discord sends the words then.
        again = await fake.user_message("make it foggy", user=ann, reply_to=first)
        child = await bound_turn(bot.core, await answer_to(fake, again, images=True))
        assert child.prompt == "make it foggy"
        assert child.parent_id == (await bound_turn(bot.core, first)).id
        assert not fake.errors


async def test_without_the_intent_a_ping_reply_to_a_plain_bot_message_works(
        settings_factory: SettingsFactory) -> None:
    """A reply result is a regular message: ping-replies to it carry their words."""
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        bo = fake.user("bo")
        first = await result_of(fake, await fake.slash("imagine", prompt="a fern", user=bo))
        second = await answer_to(fake, await fake.user_message(
            "in autumn colours", user=bo, reply_to=first), images=True)
        assert second.interaction_id is None  # a channel reply, not an interaction response
        third_ask = await fake.user_message("now at night", user=bo, reply_to=second,
                                            mention_bot=False, attachments=[png()])
        third = await bound_turn(bot.core, await answer_to(fake, third_ask, images=True))
        assert third.prompt == "now at night" and len(third.input_hashes) == 1
        assert third.parent_id == (await bound_turn(bot.core, second)).id
        assert not fake.errors


async def test_without_the_intent_someones_picture_points_to_the_edit_menu(
        settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        cat, dan = fake.user("cat"), fake.user("dan")
        photo = await fake.user_message("my dog", user=cat, attachments=[png()],
                                        mention_bot=False)
        ask = await fake.user_message("as a watercolour", user=dan, reply_to=photo)
        hint = await answer_to(fake, ask, images=False)
        assert "Apps → Edit image" in hint.text
        assert await credits_moved(bot, dan.id) == []
        # The context menu receives the whole message, intent or not.
        menu = await fake.context_menu("Edit image", photo, user=dan)
        await fake.wait_for("modal", lambda e: e.interaction is menu)
        result = await result_of(fake, await fake.submit_modal(
            menu, {"instruction": "as a watercolour"}))
        assert len((await bound_turn(bot.core, result)).input_hashes) == 1
        assert not fake.errors


async def test_with_the_intent_ping_replies_and_other_peoples_pictures_work(
        settings_factory: SettingsFactory) -> None:
    async with FakeDiscord(portal_intents=MESSAGE_CONTENT_INTENT) as fake, running_bot(
            fake, discord_settings(settings_factory, fake, **INTENT_ON)) as bot:
        assert fake.intents & MESSAGE_CONTENT_INTENT
        eve, fay = fake.user("eve"), fake.user("fay")
        first = await result_of(fake, await fake.slash("imagine", prompt="a mill", user=eve))
        ask = await fake.user_message("add snow", user=eve, reply_to=first, mention_bot=False)
        child = await bound_turn(bot.core, await answer_to(fake, ask, images=True))
        assert child.prompt == "add snow"
        photo = await fake.user_message("my cat", user=fay, attachments=[png()],
                                        mention_bot=False)
        ask = await fake.user_message("as a sculpture", user=eve, reply_to=photo)
        turn = await bound_turn(bot.core, await answer_to(fake, ask, images=True))
        assert turn.parent_id is None and len(turn.input_hashes) == 1
        # A reply that does not address the bot is still not an edit.
        mark = fake.mark()
        await fake.user_message("lovely", user=fay, reply_to=first, mention_bot=False,
                                ping=False)
        await asyncio.sleep(0.5)
        assert not [e for e in fake.events[mark:] if e.kind == "message"
                    and e.message is not None and e.message.author == fake.bot]
        assert not fake.errors


async def test_asking_for_the_intent_the_portal_refuses_is_a_clear_error(
        settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake:
        core = build_core(discord_settings(settings_factory, fake, **INTENT_ON))
        await core.start()
        try:
            adapter = DiscordAdapter(core.api, token=fake.token)
            with pytest.raises(ConfigError, match="Developer Portal"):
                await asyncio.wait_for(adapter.run(asyncio.Event()), 10)
        finally:
            await core.stop(grace=0)
