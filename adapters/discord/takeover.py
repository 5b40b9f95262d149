"""Jobs a stopped process had queued for Discord (bot/handoff.py), made and delivered here.

Shards run in several processes. A job waiting for its slot keeps a ticket saying where its
result goes: the channel, who asked, the message showing its progress (the public deferral, or
the status reply) and the message it answers. When that process stops, another claims the
ticket (once its lease lapsed, a third of a lease apart), makes the call again and posts the
result in the channel, pinging its requester only, as a result whose interaction token expired
is posted (deliver.py); the progress message goes. The ticket keeps no interaction token: a
token is a credential, and nothing but the process that received it holds one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from functools import partial

from adapters.discord.inbound import PLATFORM, Place
from adapters.discord.outbox import replay
from adapters.discord.runtime import Runtime
from bot.api import Actor, Handoff, Ticket

log = logging.getLogger("adapters.discord")


def handoff(channel_id: int | None, guild_id: int | None, user_id: int,
            shown: Callable[[], int | None], reply_to: int | None = None) -> Handoff | None:
    """Where a job's result goes should another process make it (read when the job waits)."""
    if channel_id is None:
        return None  # nowhere to post it but the interaction itself
    return Handoff(PLATFORM, lambda: json.dumps({
        "channel_id": channel_id, "guild_id": guild_id, "user_id": user_id, "shown": shown(),
        "reply_to": reply_to}))


async def take_over(rt: Runtime, tasks: set[asyncio.Task[None]]) -> int:
    """Claim the Discord jobs of stopped processes and start each here; how many there were."""
    claimed = await rt.api.handed_over(PLATFORM)
    for ticket, actor in claimed:
        place = Place(**json.loads(ticket.target))
        task = asyncio.create_task(_resume(rt, ticket, actor, place), name="discord:takeover")
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    return len(claimed)


async def _resume(rt: Runtime, ticket: Ticket, actor: Actor, place: Place) -> None:
    async def work() -> None:
        try:
            reply = await rt.api.resume(ticket)
            await rt.out.in_channel(reply, place.channel_id, place.guild_id, place.user_id,
                                    reply_to=place.reply_to)
        finally:  # the other process's progress message goes, whatever became of the job
            await rt.out.delete(place.channel_id, place.guild_id, place.shown)

    async with rt.tracked():
        await rt.guard(actor, work(), partial(rt.out.tell, place.channel_id, place.user_id))


async def keep_taking_over(rt: Runtime) -> None:
    """:func:`take_over`, and post what stopped processes parked (outbox.py), every third of a
    lease (when a stopped process's would have lapsed)."""
    tasks: set[asyncio.Task[None]] = set()
    while True:
        try:
            await take_over(rt, tasks)
            await replay(rt, tasks)
        except Exception:
            log.exception("discord: taking over queued jobs failed; trying again later")
        await asyncio.sleep(rt.api.handover_every)
