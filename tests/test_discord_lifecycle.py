"""Start-up and shutdown of the Discord adapter, and the fake's own enforcement of Discord's rules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import discord
import pytest

from adapters.discord import DiscordAdapter
from adapters.discord.app import point_at, restore
from bot.bootstrap import build_core
from bot.config import Settings
from bot.errors import ConfigError
from tests.fake_discord import (
    MIB,
    FakeDiscord,
    discord_settings,
    png,
    result_of,
    running_bot,
)

SettingsFactory = Callable[..., Settings]


async def test_connected_flag_and_graceful_stop(settings_factory: SettingsFactory) -> None:
    slow = {"demo": {"api": "demo", "demo_delay_seconds": 1.5}}
    async with FakeDiscord() as fake:
        cy = fake.user("cy")
        async with running_bot(fake, discord_settings(settings_factory, fake,
                                                      providers=slow)) as bot:
            async with asyncio.timeout(5):
                # READY is parsed just after the fake sent it; nothing to await but the flag.
                while not bot.adapter.connected:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            ix = await fake.slash("imagine", prompt="before the stop", user=cy)
            await fake.wait_for("edit", lambda e: e.interaction is ix)
        # Leaving the block stopped the adapter: the job in flight was still delivered.
        assert not bot.adapter.connected
        assert (await result_of(fake, ix, timeout=1)).attachments
        assert not fake.errors


async def test_refuses_new_work_while_draining(settings_factory: SettingsFactory) -> None:
    slow = {"demo": {"api": "demo", "demo_delay_seconds": 1.0}}
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake, providers=slow)) as bot:
        dee = fake.user("dee")
        first = await fake.slash("imagine", prompt="first", user=dee)
        await fake.wait_for("edit", lambda e: e.interaction is first)
        runtime = bot.adapter.runtime
        assert runtime is not None
        drain = asyncio.create_task(runtime.drain(5))
        late = await fake.slash("imagine", prompt="late", user=dee)
        refused = await fake.wait_for("message", lambda e: e.interaction is late)
        assert refused.message is not None and refused.message.ephemeral
        assert refused.message.text.startswith("The bot is restarting")
        await drain
        assert (await result_of(fake, first)).attachments


async def test_bad_token_is_a_clear_configuration_error(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake:
        core = build_core(discord_settings(settings_factory, fake))
        await core.start()
        try:
            adapter = DiscordAdapter(core.api, token="wrong")
            with pytest.raises(ConfigError, match="rejected the bot token"):
                await asyncio.wait_for(adapter.run(asyncio.Event()), 10)
        finally:
            await core.stop(grace=0)
        assert [e.data["status"] for e in fake.errors] == [401]


async def test_fake_refuses_privileged_intents(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake:
        section = discord_settings(settings_factory, fake).discord
        previous = point_at(section.api_base_url, section.gateway_url)
        try:
            client = discord.Client(intents=discord.Intents.all())
            with pytest.raises(discord.PrivilegedIntentsRequired):
                async with client:
                    await asyncio.wait_for(client.start(fake.token), 10)
        finally:
            restore(previous)


async def test_fake_enforces_ack_deadline_token_life_and_upload_limit() -> None:
    async with FakeDiscord(ack_timeout=0.2, token_life=0.5, upload_limit=MIB) as fake, \
            aiohttp.ClientSession() as http:
        ee = fake.user("ee")

        def new() -> tuple[str, str]:
            ix = fake._new_interaction(2, {"name": "x", "type": 1}, ee, None)
            return (f"{fake.api_url}/interactions/{ix.id}/{ix.token}/callback",
                    f"{fake.api_url}/webhooks/{fake.bot.id}/{ix.token}")

        callback, webhook = new()
        await asyncio.sleep(0.3)
        async with http.post(callback, json={"type": 5}) as resp:
            assert (resp.status, (await resp.json())["code"]) == (404, 10062)

        callback, webhook = new()
        async with http.post(callback, json={"type": 5}) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        async with http.post(callback, json={"type": 5}) as resp:
            assert (await resp.json())["code"] == 40060
        form = aiohttp.FormData()
        form.add_field("payload_json", '{"content": "big"}')
        form.add_field("files[0]", png() + b"\0" * MIB, filename="big.png")
        async with http.post(webhook, data=form) as resp:
            assert (resp.status, (await resp.json())["code"]) == (413, 40005)
        await asyncio.sleep(0.6)
        async with http.post(webhook, json={"content": "late"}) as resp:
            assert (resp.status, (await resp.json())["code"]) == (401, 50027)
