"""Channel posts Discord told to wait long, kept across restarts (bot/outbox.py), posted again.

discord.py waits a 429 out inside the call, but only up to ``max_ratelimit_timeout``
(:data:`MAX_WAIT`, at least 30 s: https://discordpy.readthedocs.io/en/stable/api.html#discord.
Client, "max_ratelimit_timeout"); a longer wait raises :class:`discord.RateLimited` with its
``retry_after``. A result posted in a channel (a message-triggered job's, or one whose
interaction token ran out; a channel allows about 5 messages in 5 s, so a busy channel is where
long waits come from) is then parked and waited out here, for as long as the result is worth
delivering (``[limits] delivery_retry_hours``). A stop while it waits keeps it held for the
next start, which posts it in its channel pinging its requester (:func:`replay`). It leaves the
outbox before each new try, so a stop while a post is on its way never makes a second post: it
is refunded then, as any result cut short is. Interaction responses go through discord.py's
webhook adapter, which waits every 429 out by itself; their buckets are per interaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import discord

from adapters.discord.inbound import PLATFORM, Place
from bot.api import Actor, Delivery, Parked

if TYPE_CHECKING:
    from adapters.discord.runtime import Runtime

log = logging.getLogger("adapters.discord")
T = TypeVar("T")
#: Longer 429 waits than this are handed to :func:`patiently` (discord.py's floor is 30 s).
MAX_WAIT = 30.0


async def patiently(out: Delivery, place: Place, post: Callable[[], Awaitable[T]],
                    patience: float) -> T:
    """``post()``; a long 429 parks the result and is waited out while ``patience`` lasts."""
    give_up_at = time.monotonic() + patience
    while True:
        await out.unpark()  # on its way now: a stop refunds it rather than posting it twice
        try:
            return await post()
        except discord.RateLimited as err:
            if time.monotonic() + err.retry_after > give_up_at:
                raise
            await out.park(PLATFORM, json.dumps(dataclasses.asdict(place)))
            log.info("result %s: Discord asks to wait %.0f s; the result waits", out.turn_id,
                     err.retry_after)
            await asyncio.sleep(err.retry_after)


async def replay(rt: Runtime, tasks: set[asyncio.Task[None]]) -> int:
    """Claim the results stopped processes had parked for Discord and post each; how many."""
    claimed = await rt.api.parked(PLATFORM)
    for parked in claimed:
        task = asyncio.create_task(_post(rt, parked), name="discord:outbox")
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if claimed:
        log.info("discord: posting %d result(s) a stopped process had parked", len(claimed))
    return len(claimed)


async def _post(rt: Runtime, parked: Parked) -> None:
    place = Place(**json.loads(parked.target))

    async def work() -> None:
        reply = await rt.api.redeliver(parked)  # None: refunded (too old, or its images gone)
        if reply is not None:
            await rt.out.in_channel(reply, place.channel_id, place.guild_id, place.user_id,
                                    reply_to=place.reply_to, patience=parked.left(rt.out.patience),
                                    parked=True)

    async with rt.tracked():
        await rt.guard(Actor(PLATFORM, str(place.user_id)), work(),
                       partial(rt.out.tell, place.channel_id, place.user_id))
