"""Results a platform refuses for now (a 429), kept in the store so that no restart loses them.

A result normally goes out within seconds and never comes here. When the platform says "later"
(Telegram's 429 with ``retry_after``), the adapter parks the open delivery
(:meth:`bot.delivery.Delivery.park`): the store keeps what it takes to send it again (the reply's
words and buttons, its turns, the chat as the adapter spells it), and its reservations stay held.
The instance sweep never refunds a parked result (bot/storage: ``orphaned_reservations``); its
reservations' owner is the process sending it, and while that owner's lease lives nobody else
touches it. When the owner stops (a restart, a crash), a process running that platform claims it
(:meth:`Outbox.claim`), loads its images from the image store and sends it again; a result older
than ``[limits] delivery_retry_hours`` (counted from when its image was ready, ``Reply.ready_at``)
is refunded instead. Sent or refunded, the row goes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, datetime

from bot.conversations import Conversations
from bot.domain import Action, ImageData, Reply
from bot.storage.base import Parked, Store

__all__ = ["Outbox", "Parked", "reply_from_json", "reply_to_json"]

log = logging.getLogger(__name__)


def reply_to_json(reply: Reply) -> str:
    """A result's reply without its images (they stay in the image store)."""
    return json.dumps({"text": reply.text, "turn_id": reply.turn_id, "locale": reply.locale,
                       "credits_used": reply.credits_used, "candidates": list(reply.candidates),
                       "actions": [dataclasses.asdict(a) for a in reply.actions]})


def reply_from_json(raw: str) -> Reply:
    """The reply :func:`reply_to_json` kept, still without images."""
    data = json.loads(raw)
    return Reply(text=data["text"], turn_id=data["turn_id"], locale=data["locale"],
                 credits_used=data["credits_used"], candidates=tuple(data["candidates"]),
                 actions=tuple(Action(**a) for a in data["actions"]))


class Outbox:
    """Parks, forgets and claims results for one process (``owner``: its instance id)."""

    def __init__(self, store: Store, conversations: Conversations, owner: str | None) -> None:
        self._store = store
        self._conversations = conversations
        self._owner = owner

    async def park(self, reply: Reply, platform: str, target: str) -> None:
        """Keep ``reply`` for ``platform`` until it is sent or given up."""
        turns = reply.candidates or ((reply.turn_id,) if reply.turn_id else ())
        # Its worth counts from when its image was ready, however often it is parked again
        # (Discord takes a post out before each try): no restart or new 429 starts it over.
        since = (datetime.fromtimestamp(reply.ready_at, UTC) if reply.ready_at is not None
                 else datetime.now(UTC))
        await self._store.park(Parked(turns[0], tuple(turns), platform, target,
                                      reply_to_json(reply), since))
        log.info("result %s parked for %s (the platform refuses it for now)", turns[0], platform)

    async def unpark(self, delivery: str) -> None:
        """The result was sent or given up."""
        await self._store.unpark(delivery)

    async def claim(self, platform: str) -> list[Parked]:
        """``platform``'s parked results whose process is gone, now this one's to send."""
        if self._owner is None:
            return []
        claimed = []
        for parked in await self._store.claim_parked(platform, self._owner):
            order = reply_from_json(parked.reply).candidates  # a batch's turns, in its order
            if order:
                held = set(parked.turn_ids)
                parked = dataclasses.replace(parked, turn_ids=tuple(t for t in order if t in held))
            claimed.append(parked)
        return claimed

    async def load(self, parked: Parked) -> Reply | None:
        """The parked reply with its images again; None when a turn or its images are gone."""
        reply = dataclasses.replace(reply_from_json(parked.reply),
                                    ready_at=parked.created_at.timestamp())
        found: list[tuple[ImageData, ...]] = []
        for turn_id in parked.turn_ids:
            turn = await self._store.get_turn(turn_id)
            outputs = await self._conversations.outputs(turn) if turn is not None else None
            if not outputs:
                return None
            found.append(outputs)
        if not reply.candidates:  # one turn: all of its images
            return dataclasses.replace(reply, images=found[0])
        # A batch: each candidate's image; those sent before the restart are not sent again.
        return dataclasses.replace(reply, images=tuple(o[0] for o in found),
                                   candidates=parked.turn_ids, turn_id=parked.turn_ids[0])
