"""/config on a Discord server (issue 17), on the fake gateway and REST API.

Manage Server (from the interaction, as Discord computes it) may change the server's settings; a
member may not. A member in a channel the server does not allow is told where the bot works; a
server that allows only nano-banana-2.1 refuses ``--model nano-banana-pro`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.config import Settings
from bot.domain import ChatRef
from bot.messages import load_catalog
from tests.fake_discord import (
    FakeDiscord,
    bound_turn,
    discord_settings,
    private_answer,
    result_of,
    running_bot,
)

SettingsFactory = Callable[..., Settings]
EN = load_catalog("en")


async def test_config_on_a_server(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake:
        studio = fake.add_guild("Studio", thread=True)
        general, thread = studio.channels
        async with running_bot(fake, discord_settings(settings_factory, fake)) as bot:
            mod, member = fake.user("mod"), fake.user("member")
            studio.moderators.add(mod.id)

            # A member cannot change the server's settings.
            ix = await fake.slash("config", user=member, channel=general, setting="models",
                                  value="nano-banana-2.1")
            answer = await private_answer(fake, ix)
            assert answer.ephemeral and answer.text == EN["error.not_allowed"]

            # Manage Server can: only nano-banana-2.1, only in #general.
            ix = await fake.slash("config", user=mod, channel=general, setting="models",
                                  value="nano-banana-2.1")
            answer = await private_answer(fake, ix)
            assert answer.text.startswith(EN["group.saved"])
            assert "models: nano-banana-2.1" in answer.text
            ix = await fake.slash("config", user=mod, channel=general, setting="channels",
                                  value="here")
            assert f"channels: {general.id}" in (await private_answer(fake, ix)).text
            saved = await bot.core.service.groups.get(
                ChatRef("discord", str(general.id), "group", group_id=str(studio.id)))
            assert saved.channels == (str(general.id),) and saved.models == ("nano-banana-2.1",)

            # In the thread (another place on the server) a member is told where the bot works.
            ix = await fake.slash("imagine", user=member, channel=thread, prompt="a lighthouse")
            answer = await private_answer(fake, ix)
            assert answer.ephemeral and f"<#{general.id}>" in answer.text
            assert answer.text.startswith(EN["error.not_here"].split("{")[0])

            # In #general: the expensive model is refused with the reason; the allowed one draws.
            ix = await fake.slash("imagine", user=member, channel=general, prompt="a lighthouse",
                                  model="nano-banana-pro")
            answer = await private_answer(fake, ix)
            assert answer.text == EN["error.group_option"].format(
                option="model", allowed="nano-banana-2.1", value="nano-banana-pro")
            ix = await fake.slash("imagine", user=member, channel=general, prompt="a lighthouse")
            result = await result_of(fake, ix)
            assert "nano-banana-2.1" in result.text

            # Anyone may read the settings; the other server is not affected.
            ix = await fake.slash("config", user=member, channel=general)
            assert (await private_answer(fake, ix)).text.startswith(EN["group.title"])
            ix = await fake.slash("config", user=member)
            assert "models: all" in (await private_answer(fake, ix)).text
            assert not fake.errors



async def test_reply_edits_can_be_turned_off(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        mod, ola = fake.user("mod"), fake.user("ola")
        fake.guild.moderators.add(mod.id)
        first = await result_of(fake, await fake.slash("imagine", prompt="a garden", user=ola))
        ix = await fake.slash("config", user=mod, setting="reply-edits", value="off")
        assert "reply-edits: off" in (await private_answer(fake, ix)).text
        ignored = await fake.user_message("add a fountain", user=ola, reply_to=first)
        with pytest.raises(TimeoutError):  # nothing answers the reply
            await fake.wait_for("message", lambda e: e.message is not None
                                and e.message.reference is ignored, timeout=1.5)
        ix = await fake.slash("config", user=mod, setting="reply-edits", value="on")
        await private_answer(fake, ix)
        ask = await fake.user_message("add a fountain", user=ola, reply_to=first)
        event = await fake.wait_for("message", lambda e: e.message is not None
                                    and e.message.reference is ask and bool(e.message.attachments))
        assert event.message is not None
        assert (await bound_turn(bot.core, event.message)).parent_id is not None
        assert not fake.errors
