"""/imagine end to end: a real discord.py client against the fake Discord, asserting what users see."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import time
from collections.abc import Callable
from typing import Any

import discord
from discord import app_commands
from PIL import Image

from bot.config import Settings
from bot.domain import Actor, ChatRef, ImageData, ImageRequest
from bot.providers.base import ProviderRequest, ProviderResult
from bot.service import ImagineService
from tests.fake_discord import (
    MIB,
    FakeDiscord,
    FakeFile,
    FakeUser,
    bound_turn,
    discord_settings,
    png,
    private_answer,
    result_of,
    running_bot,
)
from tests.outcomes import jobs

SettingsFactory = Callable[..., Settings]


async def used(service: ImagineService, user: FakeUser) -> float:
    """Credits ``user`` has spent today (held ones included)."""
    usage = await service.usage(Actor("discord", str(user.id)))
    window = usage.window("user_daily")
    assert window is not None
    return float(window.used)


async def test_imagine_with_two_attachments(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        alice = fake.user("alice")
        ix = await fake.slash("imagine", prompt="a red fox in snow", user=alice,
                              attachments=[png(color=(255, 0, 0)), png(color=(0, 0, 255))])
        result = await result_of(fake, ix)
        ack = await fake.wait_for("ack", lambda e: e.interaction is ix)
        assert ack.data == {"type": 5, "flags": 0}  # "thinking", publicly
        # The result is the edit that ends the deferral: no follow-up, nothing to delete.
        assert not result.ephemeral and result is ix.original
        assert "a red fox in snow" in result.text and "nano-banana" in result.text
        assert result.pings() == {f"user:{alice.id}"}
        assert [label for label, _ in result.buttons()] == [
            "🔄 Reroll", "⬆ 2K (6)", "⬆ 4K (12)", "🎲 Variations", "✏️ Edit", "🗑 Delete"]
        assert result.attachments[0].dimensions() == (1024, 1024)
        # Components v2: no content, the text in a text display, the image in a gallery.
        assert result.v2 and result.content == "" and result.gallery() == result.attachments
        turn = await bound_turn(bot.core, result)
        assert len(turn.input_hashes) == 2
        assert fake.visible(channel=fake.channel, viewer=alice) == [result]
        assert await used(bot.core.service, alice) == turn.credits > 0
        assert not fake.errors


async def test_options_and_inline_flags(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        bob = fake.user("bob")
        ix = await fake.slash("imagine", prompt="a lighthouse --ar 16:9 --size 2K", user=bob,
                              model="nano-banana-pro")
        result = await result_of(fake, ix)
        turn = await bound_turn(bot.core, result)
        assert (turn.model, turn.size, turn.aspect) == ("nano-banana-pro", "2K", "16:9")
        assert turn.prompt == "a lighthouse"
        width, height = result.attachments[0].dimensions() or (0, 0)
        assert abs(width / height - 16 / 9) < 0.02
        labels = [label for label, _ in result.buttons()]
        assert "⬆ 4K (24)" in labels and "⬆ 2K (14)" not in labels
        # A size the chosen model lacks is refused with the sizes it has, privately.
        ix2 = await fake.slash("imagine", prompt="a boat", user=bob, model="nano-banana-2-lite",
                               size="4K")
        answer = await private_answer(fake, ix2)
        assert answer.ephemeral and "4K" in answer.text and "1K" in answer.text
        assert not fake.errors


async def test_everyone_in_prompt_pings_only_the_requester(
        settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(fake, discord_settings(settings_factory, fake)):
        carol = fake.user("carol")
        ix = await fake.slash("imagine", prompt="@everyone look <@&123> <@999> @here",
                              user=carol)
        result = await result_of(fake, ix)
        assert "@everyone" in result.text
        assert result.pings() == {f"user:{carol.id}"}
        assert result.allowed_mentions is not None
        assert result.allowed_mentions["parse"] == []
        assert [str(u) for u in result.allowed_mentions["users"]] == [str(carol.id)]
        for msg in fake.visible(viewer=carol):
            assert "everyone" not in msg.pings()


async def test_bad_input_is_explained_privately_and_free(settings_factory: SettingsFactory) -> None:
    # Limits shrunk so that "too large" needs only 1.5 MB.
    async with FakeDiscord() as fake, running_bot(fake, discord_settings(
            settings_factory, fake, limits={"max_input_mb": 1.0},
            models={"nano-banana-2.1": {"max_references": 3}})) as bot:
        dave = fake.user("dave")
        cases: list[tuple[dict[str, Any], str]] = [
            ({"attachments": [FakeFile("notes.txt", b"just some text\n" * 20)]}, "not an image"),
            ({"attachments": [os.urandom(1_500_000)]}, "the limit is 1.0 MB"),
            ({"attachments": [png(), png(), png(), png()]}, "at most 3 reference images"),
            ({"prompt": "--ar 16:9"}, "Tell me what to draw"),
            ({"prompt": "a cat --bogus 1"}, "Unknown option"),
        ]
        for extra, expected in cases:
            kwargs: dict[str, Any] = {"prompt": "a cat", **extra}
            ix = await fake.slash("imagine", user=dave, **kwargs)
            answer = await private_answer(fake, ix)
            assert answer.ephemeral and expected in answer.text, answer.text
            assert "Traceback" not in answer.text
        assert await used(bot.core.service, dave) == 0
        assert not [m for m in fake.visible() if not m.ephemeral]
        assert not fake.errors


class BigNoiseProvider:
    """Returns a real 5504x3072 noise PNG of about 20 MB, as a 4K Gemini answer can be."""

    name = "demo"
    _cache: bytes | None = None

    @classmethod
    def image(cls) -> bytes:
        """The PNG (made once; noise of a few bits per channel keeps it near 20 MB)."""
        if cls._cache is None:
            raw = os.urandom(5504 * 3072 * 3).translate(bytes(b & 0x07 for b in range(256)))
            out = io.BytesIO()
            Image.frombytes("RGB", (5504, 3072), raw).save(out, "PNG", compress_level=1)
            cls._cache = out.getvalue()
        return cls._cache

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        """One huge image."""
        data = await asyncio.to_thread(self.image)
        return ProviderResult(images=(ImageData(data, "image/png", 5504, 3072, "4k.png"),))

    async def aclose(self) -> None:
        """Nothing to close."""


async def test_4k_result_is_fitted_under_the_upload_limit(
        settings_factory: SettingsFactory) -> None:
    big = await asyncio.to_thread(BigNoiseProvider.image)
    assert len(big) > 15 * MIB
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake),
            providers={"demo": BigNoiseProvider()}) as bot:
        erin = fake.user("erin")
        ix = await fake.slash("imagine", prompt="a storm --size 4K", user=erin,
                              model="nano-banana-pro")
        result = await result_of(fake, ix, timeout=30)
        sent = result.attachments[0]
        assert sent.size <= 10 * MIB
        width, height = sent.dimensions() or (0, 0)
        assert abs(width / height - 5504 / 3072) < 0.01 and width >= 2048
        turn = await bound_turn(bot.core, result)
        assert await used(bot.core.service, erin) == turn.credits == 24
        assert not fake.errors


async def test_refused_upload_refunds(settings_factory: SettingsFactory) -> None:
    # Discord says 10 MiB per file but refuses anything over 20 KB: the upload fails after fitting.
    async with FakeDiscord(upload_limit=20_000, advertised_limit=10 * MIB) as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        frank = fake.user("frank")
        ix = await fake.slash("imagine", prompt="a detailed city", user=frank)
        answer = await private_answer(fake, ix)
        assert "could not be uploaded" in answer.text
        assert [e.data["code"] for e in fake.errors] == [40005]
        assert await used(bot.core.service, frank) == 0
        assert not [m for m in fake.visible() if m.attachments]


async def test_upload_refused_for_good_refunds_exactly_once(
        settings_factory: SettingsFactory) -> None:
    """Delivery abandoned by an exception, on both paths: one refund each, the user is told."""
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        pia = fake.user("pia")
        first = await result_of(fake, await fake.slash("imagine", prompt="a harbour", user=pia))
        paid = await bound_turn(bot.core, first)
        fake.refuse_uploads()  # 403 / 50013: the bot lost Attach Files
        answer = await private_answer(fake, await fake.slash("imagine", prompt="boats",
                                                             user=pia))
        assert "could not be uploaded" in answer.text and "Nothing was charged" in answer.text
        ask = await fake.user_message("add boats", user=pia, reply_to=first)
        told = await fake.wait_for("message", lambda e: e.message is not None
                                   and e.message.reference is ask
                                   and "could not be uploaded" in e.message.text)
        assert told.message is not None and not told.message.attachments
        ledger = await bot.core.store.ledger(f"discord:{pia.id}")
        assert [e.kind for e in ledger] == ["reserve", "settle", "reserve", "refund", "reserve",
                                            "refund"]
        assert await bot.core.store.held_reservations() == []
        assert await used(bot.core.service, pia) == paid.credits
        assert [e.data["code"] for e in fake.errors] == [50013, 50013]


async def test_result_after_the_token_expired_goes_to_the_channel(
        settings_factory: SettingsFactory) -> None:
    slow = {"demo": {"api": "demo", "demo_delay_seconds": 2.5}}
    async with FakeDiscord(token_life=1.5) as fake, running_bot(
            fake, discord_settings(settings_factory, fake, providers=slow)) as bot:
        gina = fake.user("gina")
        ix = await fake.slash("imagine", prompt="a slow sunrise @everyone", user=gina)
        event = await fake.wait_for("message", lambda e: e.message is not None
                                    and e.message.via == "channel", timeout=15)
        result = event.message
        assert result is not None and result.attachments and result.interaction_id is None
        assert result.text.startswith(f"<@{gina.id}>")
        assert result.pings() == {f"user:{gina.id}"}
        assert result.buttons()[0][0] == "🔄 Reroll"
        turn = await bound_turn(bot.core, result)
        assert await used(bot.core.service, gina) == turn.credits
        # Only the expired token was refused (the edit that was to carry the result), and the
        # public "thinking" it left is deleted as the bot's own channel message.
        assert {e.data["code"] for e in fake.errors} == {50027}
        await fake.wait_for("delete", lambda e: e.message is ix.original)
        assert fake.visible(channel=fake.channel) == [result]


async def test_progress_shows_queue_position_and_elapsed_time(
        settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(fake, discord_settings(
            settings_factory, fake, limits={"global_concurrency": 1},
            providers={"demo": {"api": "demo", "demo_delay_seconds": 3.5}})):
        hana, ivan = fake.user("hana"), fake.user("ivan")
        first = await fake.slash("imagine", prompt="first", user=hana)
        await fake.wait_for("edit", lambda e: e.interaction is first)
        second = await fake.slash("imagine", prompt="second", user=ivan)
        queued = await fake.wait_for("edit", lambda e: e.interaction is second)
        assert queued.message is not None and queued.message is second.original
        assert queued.data["content"] == "⏳ Queued, position 1…"
        await result_of(fake, first)
        await result_of(fake, second, timeout=15)
        edits = [e for e in fake.events if e.kind == "edit" and e.interaction is second
                 and str(e.data["content"]).startswith(("⏳", "🎨"))]  # not the result's edit
        texts = [e.data["content"] for e in edits]
        assert texts[0] == "⏳ Queued, position 1…" and texts[1].startswith("🎨 Generating…")
        gaps = [b.at - a.at for a, b in itertools.pairwise(edits)]
        assert all(gap >= 2.9 for gap in gaps), gaps
        assert not fake.errors


async def test_rate_limited_follow_up_is_retried(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(fake, discord_settings(settings_factory, fake)):
        fake.rate_limit_once("/webhooks/")
        ix = await fake.slash("imagine", prompt="patience", user=fake.user("jo"))
        await result_of(fake, ix)
        assert [e.kind for e in fake.events].count("rate_limited") == 1
        assert not fake.errors


async def test_result_without_any_progress_edit_is_still_public(
        settings_factory: SettingsFactory) -> None:
    # A follow-up to a response that still "thinks" would replace it and stay ephemeral.
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        client, runtime = bot.adapter.client, bot.adapter.runtime
        assert client is not None and runtime is not None

        @app_commands.command(name="quick", description="a job that reports no progress")
        async def quick(interaction: discord.Interaction[Any]) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            actor = Actor("discord", str(interaction.user.id))
            request = ImageRequest(actor, ChatRef("discord", str(interaction.channel_id), "group"),
                                   "no progress")
            reply = await jobs(bot.core).imagine(request)
            await runtime.out.result(interaction, reply, resolved=False, began=time.monotonic())

        client.tree.add_command(quick)
        ix = await fake.slash("quick", user=fake.user("kai"))
        result = await result_of(fake, ix)
        assert not result.ephemeral
        first_edit = await fake.wait_for("edit", lambda e: e.interaction is ix)
        assert str(first_edit.data["content"]).startswith("✅ Done in")
        assert first_edit.at < next(e.at for e in fake.events if e.message is result)
