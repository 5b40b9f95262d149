"""Discord on two shards in two processes (one Redis): each guild's commands reach the process
running its shard, DMs reach shard 0, and both answer through the interaction's webhook."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

from bot.domain import MessageRef
from tests.conftest import make_settings
from tests.fake_discord import FakeChannel, FakeDiscord, bound_turn, result_of, running_bot
from tests.redis_service import REDIS_URL, redis_prefix


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
