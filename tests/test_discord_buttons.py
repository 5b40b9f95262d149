"""Persistent buttons: owner checks, a press after a restart, upscale, variations, delete."""

from __future__ import annotations

from collections.abc import Callable

from bot.config import Settings
from tests.fake_discord import (
    FakeDiscord,
    FakeMessage,
    bound_turn,
    discord_settings,
    private_answer,
    response_of,
    result_of,
    running_bot,
)

SettingsFactory = Callable[..., Settings]


def button(message: FakeMessage, prefix: str) -> str:
    """The custom_id of the first button whose custom_id starts with ``prefix``."""
    return next(cid for _, cid in message.buttons() if cid.startswith(prefix))


async def test_someone_elses_button_is_refused_privately(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(fake, discord_settings(settings_factory, fake)):
        rae, sam = fake.user("rae"), fake.user("sam")
        ix = await fake.slash("imagine", prompt="a dune", user=rae)
        result = await result_of(fake, ix)  # in place of its public "thinking"
        mark = fake.mark()
        for prefix in ("ib:reroll:", "ib:edit:", "ib:delete:"):
            press = await fake.press(button(result, prefix), user=sam)
            answer = await response_of(fake, press)
            assert answer.ephemeral
            assert answer.text == "Only the requester (or an admin) can do that."
        assert not any(e.kind in ("modal", "delete") for e in fake.events[mark:])
        assert not result.deleted
        assert not fake.errors


async def test_button_pressed_after_a_restart(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake:
        settings = discord_settings(settings_factory, fake)
        tia = fake.user("tia")
        async with running_bot(fake, settings) as first_bot:
            ix = await fake.slash("imagine", prompt="a comet", user=tia, model="nano-banana-pro")
            result = await result_of(fake, ix)
            old_turn = await bound_turn(first_bot.core, result)
        # A new process: new Core on the same data dir, new discord.py client, same messages.
        async with running_bot(fake, settings) as second_bot:
            upscale = button(result, "ib:upscale:")
            assert upscale.endswith(":2K")
            press = await fake.press(upscale, user=tia)
            bigger = await result_of(fake, press)
            turn = await bound_turn(second_bot.core, bigger)
            assert turn.size == "2K" and turn.kind == "upscale"
            assert turn.parent_id == old_turn.parent_id and turn.prompt == "a comet"
            assert bigger.attachments[0].dimensions() == (2048, 2048)
            reroll = await fake.press(button(result, "ib:reroll:"), user=tia)
            again = await bound_turn(second_bot.core, await result_of(fake, reroll))
            assert again.kind == "reroll" and again.size == old_turn.size
        assert not fake.errors


async def test_variations_and_delete(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        uma = fake.user("uma")
        result = await result_of(fake, await fake.slash("imagine", prompt="a koi", user=uma))
        turn = await bound_turn(bot.core, result)
        press = await fake.press(button(result, "ib:variations:"), user=uma)
        variation = await result_of(fake, press)
        child = await bound_turn(bot.core, variation)
        # The chosen image goes as a reference of a new conversation (b7d621e, issue 16.2).
        assert child.kind == "variation" and child.parent_id is None
        assert len(child.input_hashes) == 1 and child.prompt == turn.prompt

        press = await fake.press(button(result, "ib:delete:"), user=uma)
        answer = await private_answer(fake, press)
        assert answer.text == "Deleted."
        assert result.deleted and not variation.deleted
        assert await bot.core.conversations.get(turn.id) is None
        assert not fake.errors


async def test_moderator_may_delete_in_their_guild(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(fake, discord_settings(settings_factory, fake)):
        vic, mod = fake.user("vic"), fake.user("mod")
        fake.guild.moderators.add(mod.id)
        result = await result_of(fake, await fake.slash("imagine", prompt="graffiti", user=vic))
        press = await fake.press(button(result, "ib:delete:"), user=mod)
        answer = await private_answer(fake, press)
        assert answer.text == "Deleted." and result.deleted
        # Moderation is not ownership: a moderator still cannot reroll someone's image.
        other = await result_of(fake, await fake.slash("imagine", prompt="mural", user=vic))
        press = await fake.press(button(other, "ib:reroll:"), user=mod)
        refused = await response_of(fake, press)
        assert "Only the requester" in refused.text


async def test_a_batch_of_four_has_its_buttons_in_rows_of_five(
        settings_factory: SettingsFactory) -> None:
    """U1-U4, V1-V4 and one Reroll (nine buttons) fit Discord's five per row; U2 is image 2."""
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        wyn = fake.user("wyn")
        result = await result_of(fake, await fake.slash("imagine", prompt="a cat --n 4",
                                                        user=wyn))
        assert len(result.attachments) == 4
        # One components-v2 message: the prompt, one gallery of the four, then the buttons.
        assert result.v2 and [c["type"] for c in result.components] == [10, 12, 1, 1, 1]
        assert result.gallery() == result.attachments and "a cat" in result.text
        rows = [[c["label"].split()[0] for c in row["components"]]
                for row in result.components if row["type"] == 1]
        assert rows == [["U1", "U2", "U3", "U4"], ["V1", "V2", "V3", "V4"], ["🔄"]]
        first = await bound_turn(bot.core, result)
        upscale = next(cid for label, cid in result.buttons() if label.startswith("U2 "))
        assert first.id not in upscale
        bigger = await bound_turn(bot.core, await result_of(fake, await fake.press(upscale,
                                                                                   user=wyn)))
        assert (bigger.kind, bigger.size) == ("upscale", "2K")
        assert not fake.errors
