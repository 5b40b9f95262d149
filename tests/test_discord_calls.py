"""What a Discord job costs in API calls: a public deferral and the edit that carries the result.

Issue 21: a 1K job made four calls (a private deferral, an edit ending its "thinking", the
result as a follow-up, the deferral's deletion); a user needs two. Progress edits come on top
only while a job runs long enough to show any.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import discord
from discord import app_commands

from adapters.discord.progress import ProgressReporter
from bot.config import Settings
from bot.domain import Actor, ChatRef, ImageRequest, Progress
from tests.fake_discord import (
    Event,
    FakeDiscord,
    FakeInteraction,
    bound_turn,
    discord_settings,
    result_of,
    running_bot,
)
from tests.outcomes import jobs

SettingsFactory = Callable[..., Settings]


def calls_for(fake: FakeDiscord, ix: FakeInteraction) -> list[str]:
    """The REST calls the bot made on ``ix``, by kind, progress edits left out."""

    def progress(event: Event) -> bool:
        # (data holds the text at the time; the message itself has changed since)
        return event.kind == "edit" and str(event.data.get("content", "")).startswith(("⏳", "🎨"))

    # The deferral's own message is the deferral's call ("message" via "response").
    return [e.kind for e in fake.events if e.interaction is ix and not progress(e)
            and not (e.kind == "message" and e.message is not None
                     and e.message.via == "response")]


async def test_a_job_costs_its_deferral_and_one_edit(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        for n in range(3):
            ix = await fake.slash("imagine", prompt=f"a kite, take {n}", user=fake.user("ola"))
            result = await result_of(fake, ix)
            await bound_turn(bot.core, result)  # settled: nothing of the job is left to send
            assert calls_for(fake, ix) == ["ack", "edit"]
            assert result is ix.original and not result.ephemeral and result.attachments
        assert not [e for e in fake.events if e.kind in ("delete", "rate_limited")]
        assert not fake.errors


async def test_a_failed_job_leaves_nothing_public(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)):
        pat, other = fake.user("pat"), fake.user("quinn")
        ix = await fake.slash("imagine", prompt="a cat --bogus 1", user=pat)
        told = await fake.wait_for("message", lambda e: e.interaction is ix
                                   and e.message is not None and e.message.via == "followup")
        assert told.message is not None and told.message.ephemeral
        assert "Unknown option" in told.message.text
        # The public "thinking" went first (a follow-up to it would have replaced it publicly).
        assert calls_for(fake, ix) == ["ack", "delete", "message"]
        assert ix.original is not None and ix.original.deleted
        assert [m for m in fake.visible(viewer=other) if m.interaction_id == ix.id] == []
        assert not fake.errors


async def test_an_edit_given_up_in_flight_is_reported() -> None:
    started = asyncio.Event()

    async def stuck(text: str) -> None:  # an edit Discord never answers
        started.set()
        await asyncio.Event().wait()

    reporter = ProgressReporter(stuck, lambda event, running: "⏳ Queued, position 1…")
    reporter.edited = True  # an earlier edit landed: the one in flight gets CLOSE_GRACE
    await reporter(Progress(job_id="j", stage="queued", position=1))
    await started.wait()
    assert await reporter.close() is True and reporter.abandoned


async def test_after_an_abandoned_edit_the_result_is_a_follow_up(
        settings_factory: SettingsFactory) -> None:
    # The edit given up may still land; had the result been an edit, it could be overwritten.
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        client, runtime = bot.adapter.client, bot.adapter.runtime
        assert client is not None and runtime is not None

        @app_commands.command(name="late", description="a job whose last progress edit hung")
        async def late(interaction: discord.Interaction[Any]) -> None:
            await runtime.out.thinking(interaction)
            request = ImageRequest(Actor("discord", str(interaction.user.id)),
                                   ChatRef("discord", str(interaction.channel_id), "group"),
                                   "a hung edit")
            reply = await jobs(bot.core).imagine(request)
            await runtime.out.result(interaction, reply, resolved=False, began=time.monotonic(),
                                     in_place=False)
            runtime.out.forget(interaction)

        client.tree.add_command(late)
        ix = await fake.slash("late", user=fake.user("uma"))
        result = await result_of(fake, ix)
        assert result.via == "followup" and not result.ephemeral and result is not ix.original
        await fake.wait_for("delete", lambda e: e.message is ix.original)
        assert calls_for(fake, ix) == ["ack", "edit", "message", "delete"]
        assert not fake.errors
