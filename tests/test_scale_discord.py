"""Discord on two shards in two processes (one Redis): each guild's commands reach the process
running its shard, DMs reach shard 0, and both answer through the interaction's webhook."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from bot.domain import MessageRef
from tests.conftest import make_settings
from tests.fake_discord import (
    FakeChannel,
    FakeDiscord,
    FakeMessage,
    bound_turn,
    result_of,
    running_bot,
)
from tests.redis_service import REDIS_URL, redis_prefix
from tests.scale_world import cluster
from tests.test_ops_crash import SlowUpstream


def channels_by_shard(fake: FakeDiscord, shards: int) -> list[FakeChannel]:
    """A guild channel on each shard (guilds are added until every shard has one)."""
    found: dict[int, FakeChannel] = {}
    for guild in fake.guilds.values():
        found.setdefault(fake.shard_of(guild.id, shards), guild.channels[0])
    while len(found) < shards:
        guild = fake.add_guild(f"guild {len(fake.guilds)}")
        found.setdefault(fake.shard_of(guild.id, shards), guild.channels[0])
    return [found[i] for i in range(shards)]


async def test_each_shard_answers_its_guilds(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, redis_prefix() as prefix, AsyncExitStack() as stack:
        channels = channels_by_shard(fake, 2)
        bots = []
        for shard in (0, 1):
            settings = make_settings(
                tmp_path / f"p{shard}", redis={"url": REDIS_URL, "prefix": prefix},
                discord={"enabled": True, "api_base_url": fake.api_url,
                         "gateway_url": fake.gateway_url, "shard_count": 2,
                         "shard_ids": [shard]})
            bots.append(await stack.enter_async_context(running_bot(fake, settings)))
        assert sorted(fake.shards.values()) == [(0, 2), (1, 2)]
        alice = fake.user("alice")
        for shard, channel in enumerate(channels):
            ix = await fake.slash("imagine", prompt=f"a fox on shard {shard}", user=alice,
                                  channel=channel)
            result = await result_of(fake, ix)
            assert f"a fox on shard {shard}" in result.text and result.via == "response"
            await bound_turn(bots[shard].core, result)  # its shard's process, and only it
            ref = MessageRef("discord", str(result.channel_id), str(result.id))
            assert await bots[1 - shard].core.conversations.turn_for(ref) is None
        assert not fake.errors


async def test_a_stopped_shards_queued_jobs_are_posted_by_another(tmp_path: Path) -> None:
    """kill -9 the process of shard 0 while jobs wait: shard 1's process makes them (issue 14),
    posts each in its channel pinging its user, and deletes the deferral left "thinking"."""
    fake, upstream = FakeDiscord(ack_timeout=30), SlowUpstream()
    upstream.delay = 1.0
    await fake.start()
    await upstream.start()
    try:
        channel = channels_by_shard(fake, 2)[0]
        async with cluster(tmp_path, count=2, telegram=None, discord=fake, shards=2,
                           upstream_url=upstream.url, limits={"global_concurrency": 1},
                           store={"lease_seconds": 5.0}) as world:
            users = [fake.user(f"u{i}") for i in range(4)]
            slashes = [await fake.slash("imagine", prompt=f"owl {i}", user=user,
                                        channel=channel) for i, user in enumerate(users)]
            victim = world.procs[0]
            assert victim.proc is not None

            async def queued() -> list[Any]:
                return await world.query("SELECT target FROM handoffs")

            deadline = time.monotonic() + 30
            while len(await queued()) < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            places = [json.loads(row["target"]) for row in await queued()]
            assert len(places) >= 2 and all(p["shown"] for p in places), places
            victim.kill(signal.SIGKILL)
            await victim.exit_code(10)

            def posted(user_id: int) -> list[FakeMessage]:
                return [m for m in fake.messages.values() if m.channel_id == channel.id
                        and m.attachments and not m.deleted and m.interaction_id is None
                        and f"<@{user_id}>" in m.text]

            def done() -> bool:  # posted, and then the deferral left "thinking" deleted
                return all(posted(p["user_id"]) and fake.messages[p["shown"]].deleted
                           for p in places)

            deadline = time.monotonic() + 60
            while not done() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            for place in places:
                assert len(posted(place["user_id"])) == 1, place  # made once, by process 1
                assert fake.messages[place["shown"]].deleted  # no "thinking" left behind
            taken = {p["user_id"] for p in places}
            assert all(ix.original is not None for ix in slashes if ix.user.id in taken)
            held = await world.query("SELECT id FROM reservations WHERE state = 'held'")
            assert held == []  # the dead hold refunded, the new one settled
            assert not [e for e in fake.errors if "404" not in str(e)], fake.errors
    finally:
        await upstream.stop()
        await fake.close()
