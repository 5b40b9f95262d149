"""Jobs a stopped process had queued for Telegram (bot/handoff.py), made and delivered here.

Several processes share one bot (webhooks through a balancer). A job waiting for its slot keeps
a ticket saying where its result goes: the chat, the message it answers, the forum topic and the
status message showing its queue place. When that process stops, another claims the ticket
(once its lease lapsed, a third of a lease apart), makes the call again and delivers the result
there, editing the same status message rather than leaving a stale one beside a new one.
"""

from __future__ import annotations

import asyncio
import json
import logging

from adapters.telegram.creating import Creating
from adapters.telegram.inbound import PLATFORM, Target
from adapters.telegram.progress import StatusReporter
from adapters.telegram.runtime import Runtime
from bot.api import Actor, Handoff, Ticket

log = logging.getLogger(__name__)


def handoff(target: Target, status: StatusReporter) -> Handoff:
    """Where a job's result goes should another process make it (read when the job waits)."""
    return Handoff(PLATFORM, lambda: json.dumps({
        "chat_id": target.chat_id, "reply_to": target.reply_to, "thread_id": target.thread_id,
        "status": status.for_ticket()}))


async def take_over(rt: Runtime, creating: Creating) -> int:
    """Claim the Telegram jobs of stopped processes and start each here; how many there were."""
    claimed = await rt.api.handed_over(PLATFORM)
    for ticket, actor in claimed:
        place = json.loads(ticket.target)
        status = place.pop("status", None)
        target = Target(**place)
        rt.run(_resume(rt, creating, ticket, actor, target, status), actor, target, "takeover")
    return len(claimed)


async def _resume(rt: Runtime, creating: Creating, ticket: Ticket, actor: Actor,
                  target: Target, status: int | None) -> None:
    locale = await rt.api.locale_for(actor)
    async with rt.reporter(target, locale, status=status) as reporter:
        reply = await rt.api.resume(ticket, reporter.on_progress)
        await creating.deliver(reply, target)


async def keep_taking_over(rt: Runtime, creating: Creating) -> None:
    """:func:`take_over` every third of a lease (when a stopped process's would have lapsed)."""
    every = rt.api.handover_every
    while True:
        try:
            await take_over(rt, creating)
        except Exception:
            log.exception("telegram: taking over queued jobs failed; trying again later")
        await asyncio.sleep(every)
