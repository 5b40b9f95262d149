"""What a Discord job costs in API calls: a public deferral and the edit that carries the result.

Issue 21: a 1K job made four calls (a private deferral, an edit ending its "thinking", the
result as a follow-up, the deferral's deletion); a user needs two. Progress edits come on top
only while a job runs long enough to show any.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.config import Settings
from tests.fake_discord import (
    Event,
    FakeDiscord,
    FakeInteraction,
    bound_turn,
    discord_settings,
    result_of,
    running_bot,
)

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
