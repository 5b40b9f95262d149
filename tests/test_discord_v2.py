"""Components v2 on Discord: the fake holds the documented rules, results and progress follow them.

https://discord.com/developers/docs/components/reference (flag ``1 << 15``, types, limits,
``attachment://`` media) and /resources/message#create-message (no content or embeds with it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp

from bot.config import Settings
from tests.discord_rules import IS_COMPONENTS_V2
from tests.fake_discord import (
    FakeDiscord,
    bound_turn,
    discord_settings,
    png,
    result_of,
    running_bot,
)

SettingsFactory = Callable[..., Settings]
V2 = IS_COMPONENTS_V2
SLOW = {"demo": {"api": "demo", "demo_delay_seconds": 4.0}}


async def _post(fake: FakeDiscord, path: str, body: dict[str, Any], *, method: str = "POST",
                files: dict[str, bytes] | None = None) -> tuple[int, dict[str, Any]]:
    """One REST call as discord.py makes it (multipart with ``files[n]`` when uploading)."""
    headers = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as http:
        if files:
            form = aiohttp.FormData()
            form.add_field("payload_json", json.dumps(body), content_type="application/json")
            for i, (name, data) in enumerate(files.items()):
                form.add_field(f"files[{i}]", data, filename=name)
            request = http.request(method, fake.api_url + path, data=form, headers=headers)
        else:
            request = http.request(method, fake.api_url + path, json=body, headers=headers)
        async with request as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else {})


def _text(content: str) -> dict[str, Any]:
    return {"type": 10, "content": content}


def _gallery(*names: str) -> dict[str, Any]:
    return {"type": 12, "items": [{"media": {"url": f"attachment://{n}"}} for n in names]}


def _buttons(*ids: str) -> dict[str, Any]:
    return {"type": 1, "components": [{"type": 2, "style": 2, "label": i, "custom_id": i}
                                      for i in ids]}


async def test_fake_refuses_what_discord_refuses_for_components_v2() -> None:
    """Each documented v2 rule, on a channel message create (and the flag on an edit)."""
    async with FakeDiscord() as fake:
        path = f"/channels/{fake.channel.id}/messages"
        photo = {"a.png": png()}
        refused: list[tuple[dict[str, Any], dict[str, bytes] | None]] = [
            ({"flags": V2, "content": "hi", "components": [_text("x")]}, None),
            ({"flags": V2, "embeds": [{"title": "t"}], "components": [_text("x")]}, None),
            ({"components": [_text("needs the flag")]}, None),
            ({"flags": V2, "components": [_text("x"), _gallery("b.png")]}, photo),
            ({"flags": V2, "components": [_gallery(*[f"a{i}.png" for i in range(11)])]},
             {f"a{i}.png": png() for i in range(11)}),
            ({"flags": V2, "components": [{"type": 12, "items": [
                {"media": {"url": "attachment://a.png"}, "description": "d" * 1025}]}]}, photo),
            ({"flags": V2, "components": [_text("x" * 4001)]}, None),
            ({"flags": V2, "components": [_text("x") for _ in range(41)]}, None),
            ({"flags": V2, "components": [_buttons("a", "b", "c", "d", "e", "f")]}, None),
            ({"flags": V2, "components": [_buttons("a"), _buttons("a")]}, None),
            ({"flags": V2, "components": [{"type": 13, "file": {
                "url": "https://example.com/a.png"}}]}, None),
            ({"flags": V2, "components": [{"type": 17, "components": [
                {"type": 17, "components": [_text("nested container")]}]}]}, None),
        ]
        for body, files in refused:
            got, answer = await _post(fake, path, body, files=files)
            assert (got, answer.get("code")) == (400, 50035), (body, answer)
        got, made = await _post(fake, path, {"flags": V2, "components": [
            _text("ok"), _gallery("a.png"), _buttons("ib:reroll:T")]}, files=photo)
        assert got == 200 and made["flags"] & V2, made
        shown = fake.messages[int(made["id"])]
        assert shown.gallery() == shown.attachments and shown.text == "ok"
        # The resolved media points at the uploaded file on the CDN, as Discord answers.
        media = made["components"][1]["items"][0]["media"]
        assert media["attachment_id"] == str(shown.attachments[0].id)
        edit = f"{path}/{made['id']}"
        for body in ({"flags": 0}, {"content": "now with content"}):
            got, answer = await _post(fake, edit, body, method="PATCH")
            assert (got, answer.get("code")) == (400, 50035), (body, answer)
        got, answer = await _post(fake, edit, {"components": [_text("still v2"),
                                                              _gallery("a.png")]}, method="PATCH")
        assert got == 200 and answer["flags"] & V2 and shown.text == "still v2"
        assert len(fake.errors) == len(refused) + 2


async def test_a_single_result_is_one_v2_message_with_its_gallery_and_buttons(
        settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        ada = fake.user("ada")
        result = await result_of(fake, await fake.slash("imagine", prompt="a quiet lake",
                                                        user=ada))
        assert result.v2 and not result.content and not result.embeds
        assert [c["type"] for c in result.components] == [10, 12, 1, 1]
        assert result.text.startswith(f"<@{ada.id}> ") and "a quiet lake" in result.text
        assert len(result.gallery()) == 1 == len(result.attachments)
        alt = result.components[1]["items"][0].get("description") or ""
        assert "a quiet lake" in alt
        assert await bound_turn(bot.core, result)
        assert not fake.errors


async def test_progress_message_is_v2_from_its_first_edit(
        settings_factory: SettingsFactory) -> None:
    """The progress message becomes v2 with its first text and stays so to the end."""
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake, providers=SLOW)):
        bea = fake.user("bea")
        ix = await fake.slash("imagine", prompt="a slow tide", user=bea)
        first = await fake.wait_for("edit", lambda e: e.interaction is ix, timeout=15)
        assert first.message is ix.original and first.message is not None
        assert first.message.v2 and not first.message.content
        assert str(first.data["content"]).startswith(("⏳", "🎨"))
        result = await result_of(fake, ix, timeout=20)
        assert result.v2 and result is ix.original
        edits = [e for e in fake.events if e.kind == "edit" and e.interaction is ix]
        assert all(e.message is not None and e.message.v2 for e in edits)
        assert not fake.errors


async def test_reply_edit_status_and_result_are_v2(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake, providers=SLOW)) as bot:
        cy = fake.user("cy")
        first = await result_of(fake, await fake.slash("imagine", prompt="a barn", user=cy),
                                timeout=20)
        ask = await fake.user_message("paint it red", user=cy, reply_to=first)
        status = await fake.wait_for("message", lambda e: e.message is not None
                                     and e.message.reference is ask
                                     and not e.message.attachments, timeout=15)
        assert status.message is not None and status.message.v2
        assert status.message.pings() == set()
        done = await fake.wait_for("message", lambda e: e.message is not None
                                   and e.message.reference is ask
                                   and bool(e.message.attachments), timeout=20)
        reply = done.message
        assert reply is not None and reply.v2 and reply.gallery() == reply.attachments
        assert reply.pings() == {f"user:{cy.id}"}  # the reply pings the requester only
        turn = await bound_turn(bot.core, reply)
        assert turn.prompt == "paint it red"
        await fake.wait_for("delete", lambda e: e.message is status.message)
        assert not fake.errors
