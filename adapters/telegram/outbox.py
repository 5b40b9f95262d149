"""Results a stopped process had parked for Telegram (bot/outbox.py), sent again after a start.

A result Telegram refused with a 429 is parked by the sender (deliver.py) and waits there; when
the process stops meanwhile, its reservations stay held and the next start claims it. Every few
minutes the adapter also claims what another process (now gone) left parked. A claimed result
goes out through the same sender, parked from the start: stopped again, it is kept again. A
batch goes out as its album with its U/V keyboard (albums_out.py), as it would have at first.
"""

from __future__ import annotations

import asyncio
import json
import logging

from adapters.telegram.albums_out import send_result
from adapters.telegram.deliver import Sender
from adapters.telegram.inbound import PLATFORM, Target
from bot.api import BotApi, Parked

log = logging.getLogger(__name__)

#: How often parked results of processes that are gone are looked for.
CLAIM_EVERY = 300.0
#: Claimed results sent at once (each still waits its turn in the sending budget).
AT_ONCE = 8


async def replay(api: BotApi, send: Sender) -> int:
    """Claim every parked Telegram result whose process is gone and send it; how many there were."""
    claimed = await api.parked(PLATFORM)
    if claimed:
        log.info("telegram: sending %d result(s) a stopped process had parked", len(claimed))
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(parked: Parked) -> None:
        async with gate:
            reply = await api.redeliver(parked)  # None: refunded (too old, or its images gone)
            if reply is not None:  # its ready_at (from the park) queues it ahead of newer ones
                await send_result(send, api, reply, Target(**json.loads(parked.target)),
                                  patience=parked.left(send.patience), parked=True)

    await asyncio.gather(*(one(p) for p in claimed))
    return len(claimed)


async def keep_replaying(api: BotApi, send: Sender) -> None:
    """:func:`replay` now and every :data:`CLAIM_EVERY` seconds, until cancelled."""
    while True:
        try:
            await replay(api, send)
        except Exception:
            log.exception("telegram: sending parked results failed; trying again later")
        await asyncio.sleep(CLAIM_EVERY)
