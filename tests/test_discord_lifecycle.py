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
from tests.store_engines import fetch

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


async def test_a_channel_post_told_to_wait_long_outlives_a_restart(
        settings_factory: SettingsFactory) -> None:
    """A reply-edit's result, refused for a minute by the channel's rate limit, is parked;
    stopped meanwhile, the next start posts it once, in reply to the user's message, and it is
    paid for once (https://discord.com/developers/docs/topics/rate-limits)."""
    slow = {"demo": {"api": "demo", "demo_delay_seconds": 1.0}}
    async with FakeDiscord() as fake:
        settings = discord_settings(settings_factory, fake, providers=slow,
                                    limits={"shutdown_grace_seconds": 1.0})
        ola = fake.user("ola")

        def answers(ask: object) -> list[object]:
            return [m for m in fake.messages.values() if m.reference is ask and m.attachments]

        async with running_bot(fake, settings) as bot:
            first = await result_of(fake, await fake.slash("imagine", prompt="a pier", user=ola))
            ask = await fake.user_message("make it night", user=ola, reply_to=first)
            # Its status reply went out; the result's post is the next one in the channel.
            await fake.wait_for("message", lambda e: e.message is not None
                                and e.message.reference is ask and not e.message.attachments)
            fake.rate_limit_once(f"/channels/{fake.channel.id}/messages", retry_after=60)
            await fake.wait_for("rate_limited", timeout=10)
            async with asyncio.timeout(5):  # parked: kept in the store
                while not await fetch(bot.core.store, "SELECT turn_id FROM outbox"):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        # Stopped while it waited: kept, its credits held.
        assert answers(ask) == []
        async with running_bot(fake, settings) as bot:
            async with asyncio.timeout(20):
                while not answers(ask):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # nothing more comes
            assert len(answers(ask)) == 1
            ledger = [e.kind for e in await bot.core.store.ledger(f"discord:{ola.id}")]
            assert ledger == ["reserve", "settle", "reserve", "settle"], ledger
            assert await bot.core.store.held_reservations() == []
        assert not fake.errors


async def test_a_channel_post_held_back_longer_than_it_is_worth_is_refunded_and_told(
        settings_factory: SettingsFactory) -> None:
    """Discord asks for a minute; the result is worth 18 s (``delivery_retry_hours``)."""
    slow = {"demo": {"api": "demo", "demo_delay_seconds": 1.0}}
    async with FakeDiscord() as fake:
        settings = discord_settings(settings_factory, fake, providers=slow,
                                    limits={"delivery_retry_hours": 0.005})
        ivy = fake.user("ivy")
        async with running_bot(fake, settings) as bot:
            first = await result_of(fake, await fake.slash("imagine", prompt="a pier", user=ivy))
            ask = await fake.user_message("make it night", user=ivy, reply_to=first)
            await fake.wait_for("message", lambda e: e.message is not None  # its status line
                                and e.message.reference is ask and not e.message.attachments)
            fake.rate_limit_once(f"/channels/{fake.channel.id}/messages", retry_after=60)
            told = await fake.wait_for("message", lambda e: e.message is not None
                                       and e.message.reference is ask
                                       and "could not be uploaded" in e.message.text)
            assert told.message is not None and not told.message.attachments
            ledger = [e.kind for e in await bot.core.store.ledger(f"discord:{ivy.id}")]
            assert ledger == ["reserve", "settle", "reserve", "refund"], ledger
            assert await fetch(bot.core.store, "SELECT turn_id FROM outbox") == []
        assert not fake.errors
