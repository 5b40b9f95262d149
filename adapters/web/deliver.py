"""The console's one platform verb for results: record that the page shows them.

A page fetches a result's images from the core's blob store (media.py), so a stored result is a
delivered one: nothing to fit, nothing to upload. ``api.delivery`` settles on ``sent``, and
refunds by itself if recording it fails.
"""

from __future__ import annotations

from bot.api import BotApi, Capabilities, MessageRef, Reply

#: The page shows images from the core's store as they are (previews are made on request).
CAPABILITIES = Capabilities(caption_limit=4096, photo_budget=None)


async def deliver(api: BotApi, reply: Reply, chat_id: str) -> Reply:
    """Hand ``reply``'s result to the browser's chat ``chat_id`` (a text reply passes as it is)."""
    if reply.turn_id is None or not reply.images:
        return reply
    async with api.delivery(reply, CAPABILITIES) as out:
        # The page's card is the message: its id is the turn's, in this browser's chat. A
        # batch's grid shows each candidate as its own picture, bound to its own turn.
        shown = reply.candidates or (reply.turn_id,)
        await out.sent_each([[MessageRef("web", chat_id, turn)] for turn in shown])
    return reply
