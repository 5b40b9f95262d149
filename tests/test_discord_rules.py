"""The fake Discord refuses what Discord refuses, and the bot stays within those rules."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
from discord import app_commands

from adapters.discord.deliver import CONTENT_LIMIT, clip
from adapters.discord.widgets import TEXT_LIMIT
from bot.config import Settings
from bot.domain import Actor, ChatRef, ImageRequest
from tests.fake_discord import (
    FakeDiscord,
    FakeFile,
    FakeMessage,
    bound_turn,
    discord_settings,
    png,
    result_of,
    running_bot,
    snowflake,
)
from tests.outcomes import jobs

SettingsFactory = Callable[..., Settings]


async def _post(fake: FakeDiscord, path: str, body: dict[str, Any], *, method: str = "POST",
                files: list[bytes] | None = None, auth: bool = True) -> tuple[int, dict[str, Any]]:
    """One REST call to the fake, as discord.py would make it (JSON or multipart)."""
    headers = {"Authorization": f"Bot {fake.token}"} if auth else {}
    async with aiohttp.ClientSession() as http:
        if files:
            form = aiohttp.FormData()
            form.add_field("payload_json", json.dumps(body), content_type="application/json")
            for i, data in enumerate(files):
                form.add_field(f"files[{i}]", data, filename=f"f{i}.png")
            request = http.request(method, fake.api_url + path, data=form, headers=headers)
        else:
            request = http.request(method, fake.api_url + path, json=body, headers=headers)
        async with request as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else {})


def _row(*ids: str) -> dict[str, Any]:
    return {"type": 1, "components": [{"type": 2, "style": 1, "label": i, "custom_id": i}
                                      for i in ids]}


async def test_fake_refuses_what_discord_refuses() -> None:
    """Each documented refusal, on a channel message create."""
    async with FakeDiscord() as fake:
        path = f"/channels/{fake.channel.id}/messages"
        cases: list[tuple[dict[str, Any], int, int]] = [
            ({"content": "x" * (CONTENT_LIMIT + 1)}, 400, 50035),
            ({"content": ""}, 400, 50006),
            ({"content": "   \n"}, 400, 50006),
            ({}, 400, 50006),
            ({"content": "ok", "components": [_row("a")] * 6}, 400, 50035),
            ({"content": "ok", "components": [_row(*"abcdef")]}, 400, 50035),
            ({"content": "ok", "components": [_row("x" * 101)]}, 400, 50035),
            ({"embeds": [{"title": "t"}] * 11}, 400, 50035),
            ({"embeds": [{"description": "d" * 4097}]}, 400, 50035),
            ({"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]}, 400, 50035),
            ({"content": "re", "message_reference": {"message_id": str(snowflake())}}, 400,
             50035),
        ]
        for body, status, code in cases:
            got, answer = await _post(fake, path, body)
            assert (got, answer.get("code")) == (status, code), (body, answer)
        accepted: list[dict[str, Any]] = [
            {"content": "x" * CONTENT_LIMIT},
            {"components": [_row("a")]},
            {"embeds": [{"title": "t"}]},
            {"content": "re", "message_reference": {"message_id": str(snowflake()),
                                                    "fail_if_not_exists": False}},
        ]
        for body in accepted:
            got, answer = await _post(fake, path, body)
            assert got == 200, (body, answer)
        assert len(fake.errors) == len(cases)


async def test_fake_upload_limit_applies_to_channel_edits() -> None:
    """A PATCH that uploads is held to the same per-file limit as a create."""
    async with FakeDiscord(upload_limit=1000) as fake:
        got, created = await _post(fake, f"/channels/{fake.channel.id}/messages",
                                   {"content": "hi"})
        assert got == 200
        path = f"/channels/{fake.channel.id}/messages/{created['id']}"
        got, answer = await _post(fake, path, {"content": "big"}, method="PATCH",
                                  files=[bytes(1001)])
        assert (got, answer["code"]) == (413, 40005)
        got, answer = await _post(fake, path, {"content": "small"}, method="PATCH",
                                  files=[png(8, 8)])
        assert got == 200 and answer["content"] == "small"
        got, answer = await _post(fake, path, {"content": "y" * 2001}, method="PATCH")
        assert (got, answer["code"]) == (400, 50035)


async def test_fake_refuses_response_types_that_do_not_fit() -> None:
    """UPDATE_MESSAGE answers components only; a modal never answers a modal submit."""
    async with FakeDiscord() as fake:
        user = fake.user("alice")
        message = FakeMessage(snowflake(), fake.channel.id, fake.guild.id, fake.bot, "hi")
        fake.messages[message.id] = message
        slash = fake._new_interaction(2, {"name": "imagine"}, user, None)
        submit = fake._new_interaction(5, {"custom_id": "m"}, user, None)
        button = fake._new_interaction(3, {"custom_id": "b"}, user, None, message)
        for ix, kind, ok in ((slash, 7, False), (slash, 6, False), (submit, 9, False),
                             (slash, 8, False), (button, 7, True)):
            got, answer = await _post(
                fake, f"/interactions/{ix.id}/{ix.token}/callback",
                {"type": kind, "data": {"content": "edited"}}, auth=False)
            assert (got == 200) is ok, (ix.type, kind, answer)
        assert message.text == "edited"


async def test_long_prompt_result_fits_discord_content_limit(
        settings_factory: SettingsFactory) -> None:
    """A prompt near Discord's own limit: the result's text stays within the v2 text limit."""
    prompt = "a lighthouse on a cliff at dusk, " * 60
    assert len(prompt) > CONTENT_LIMIT - 50
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        alice = fake.user("alice")
        ix = await fake.slash("imagine", prompt=prompt, user=alice)
        result = await result_of(fake, ix)
        assert len(result.text) <= TEXT_LIMIT and result.attachments
        assert result.text.startswith(f"<@{alice.id}> a lighthouse")
        assert (await bound_turn(bot.core, result)).prompt == prompt.strip()
        assert not fake.errors


async def test_adapter_clips_any_reply_text_to_the_content_limit(
        settings_factory: SettingsFactory) -> None:
    """Whatever text the core hands over (here 5,000 characters), the result is still sent.

    The core trims prompts in captions, so the adapter's clipping is the last guard; the fake
    refuses a v2 message whose text displays pass 4000 characters, so without it the upload is
    lost.
    """
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        client, runtime = bot.adapter.client, bot.adapter.runtime
        assert client is not None and runtime is not None

        @app_commands.command(name="long", description="a result with a very long caption")
        async def long(interaction: discord.Interaction[Any]) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            actor = Actor("discord", str(interaction.user.id))
            request = ImageRequest(actor, ChatRef("discord", str(interaction.channel_id), "group"),
                                   "a long caption")
            reply = await jobs(bot.core).imagine(request)
            reply = dataclasses.replace(reply, text=reply.text + " " + "word " * 1000)
            await runtime.out.result(interaction, reply, resolved=False, began=time.monotonic())

        client.tree.add_command(long)
        ix = await fake.slash("long", user=fake.user("kai"))
        result = await result_of(fake, ix)
        assert len(result.text) == TEXT_LIMIT and result.text.endswith("…")
        turn = await bound_turn(bot.core, result)
        assert turn.prompt == "a long caption"
        assert not fake.errors


def test_clip_keeps_short_text_and_cuts_long_text() -> None:
    """``clip`` leaves text at the limit alone and ends cut text with an ellipsis."""
    assert clip("x" * CONTENT_LIMIT) == "x" * CONTENT_LIMIT
    cut = clip("x" * (CONTENT_LIMIT + 1))
    assert len(cut) == CONTENT_LIMIT and cut.endswith("…")


def test_fake_file_sizes() -> None:
    """FakeFile reports its byte size (used by the upload-limit rule)."""
    assert FakeFile("a.png", bytes(10)).size == 10


async def test_result_for_a_deleted_trigger_is_still_delivered(
        settings_factory: SettingsFactory) -> None:
    """The user deletes the message that asked: the result lands as a plain message, paid.

    Discord refuses a reply to a message that is gone unless ``fail_if_not_exists`` is false;
    the old fake accepted it, so a lost (refunded) result looked delivered.
    """
    async with FakeDiscord() as fake, running_bot(fake, discord_settings(
            settings_factory, fake,
            providers={"demo": {"api": "demo", "demo_delay_seconds": 0.5}})) as bot:
        ola = fake.user("ola")
        first = await result_of(fake, await fake.slash("imagine", prompt="a garden", user=ola))
        await bound_turn(bot.core, first)
        ask = await fake.user_message("add a fountain", user=ola, reply_to=first)
        ask.deleted = True  # deleted while the job runs
        event = await fake.wait_for("message", lambda e: e.message is not None and (
            e.message.author == fake.bot and bool(e.message.attachments)
            and e.message is not first))
        assert event.message is not None and event.message.reference is None
        turn = await bound_turn(bot.core, event.message)
        assert turn.prompt == "add a fountain"
        kinds = [e.kind for e in await bot.core.store.ledger(f"discord:{ola.id}")]
        assert kinds == ["reserve", "settle", "reserve", "settle"]
        assert not [e for e in fake.errors if e.data["code"] == 50035]
