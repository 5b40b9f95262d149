"""Albums out: a batch as one album, its U/V/Reroll keyboard on one message after it, and the
/history and /describe answers that reuse the same shape.

sendMediaGroup sends 2-10 photos as one album, but "an album" carries no ``reply_markup``
(https://core.telegram.org/bots/api#sendmediagroup: the method takes none), so the buttons go on
one text message right after it. Each photo is bound to its own candidate (``out.sent_each``):
a reply to photo 3 edits candidate 3, and U3 / V3 act on it. A batch's album is a result like a
single photo (deliver.py): the RESULT lane, in the order the images were ready, a 429 waited
out for as long as the result is worth delivering. When the album is refused for good, the
photos go one by one; whatever did not arrive is refunded by the core when the block ends, and
its buttons are left off the keyboard.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from telegram import InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError

from adapters.telegram.deliver import (
    CAPABILITIES,
    POOL_WAIT,
    Sender,
    Sending,
    markup,
    settle_landed,
)
from adapters.telegram.inbound import Target, ref_of
from adapters.telegram.widgets import batch_keyboard
from bot.api import BotApi, Delivery, ImageData, Reply

log = logging.getLogger(__name__)
T = TypeVar("T")


async def send_album(send: Sender, target: Target, photos: Sequence[ImageData],
                     captions: Sequence[str], name: str,
                     result: Sending | None = None) -> list[Message | None]:
    """``photos`` as one album (one photo alone as a photo); what arrived, per photo.

    ``result``: the album is that open delivery's result (sent as one, see the docstring).
    """
    bot = send.bot

    async def call(what: str, make: Callable[[bool], Awaitable[T]]) -> T:
        return await (make(False) if result is None else send.as_result(result, what, make))

    if len(photos) >= 2:
        media = [InputMediaPhoto(p.data, caption=markup(c, CAPABILITIES.caption_limit),
                                 parse_mode=ParseMode.HTML, filename=f"{name}-{i}.{p.extension}")
                 for i, (p, c) in enumerate(zip(photos, captions, strict=True), 1)]
        try:
            sent = await call("sendMediaGroup", lambda paid: bot.send_media_group(
                target.chat_id, media, reply_parameters=target.reply,
                message_thread_id=target.thread_id, allow_paid_broadcast=paid or None,
                pool_timeout=POOL_WAIT))
            return [*sent, *[None] * (len(photos) - len(sent))]
        except TelegramError as err:
            log.warning("album refused (%s); sending its photos one by one", err)
    out: list[Message | None] = []
    for i, (photo, caption) in enumerate(zip(photos, captions, strict=True), 1):
        def one(paid: bool, i: int = i, photo: ImageData = photo,
                caption: str = caption) -> Awaitable[Message]:
            return bot.send_photo(
                target.chat_id, photo.data, caption=markup(caption, CAPABILITIES.caption_limit),
                parse_mode=ParseMode.HTML, reply_parameters=target.reply,
                message_thread_id=target.thread_id, filename=f"{name}-{i}.{photo.extension}",
                allow_paid_broadcast=paid or None, pool_timeout=POOL_WAIT)

        try:
            out.append(await call("sendPhoto", one))
        except (BadRequest, TelegramError) as err:
            log.warning("photo %d of %s not delivered (%s)", i, name, err)
            out.append(None)
    return out


async def send_result(send: Sender, api: BotApi, reply: Reply, target: Target,
                      patience: float | None = None, parked: bool = False) -> None:
    """A result: a batch as its album with its keyboard after it, else one photo (deliver.py).

    ``patience`` and ``parked`` as for :meth:`Sender.result` (a result from the outbox).
    """
    if reply.candidates:
        await send_batch(send, api, reply, target, patience, parked)
    else:
        await send.result(reply, target, patience, parked)


async def send_batch(send: Sender, api: BotApi, reply: Reply, target: Target,
                     patience: float | None = None, parked: bool = False) -> None:
    """A batch: its candidates as one album, then the caption with U1..Un, V1..Vn, Reroll."""
    try:
        async with api.delivery(reply, CAPABILITIES, parked) as out:
            await _deliver(send, api, out, send.sending(out, target, patience))
    except Exception:
        log.exception("sending batch %s to chat %s failed", reply.turn_id, target.chat_id)
        await send.text(target, api.t(reply.locale, "telegram.undeliverable"))


async def _deliver(send: Sender, api: BotApi, out: Delivery, job: Sending) -> None:
    reply, target = out.reply, job.target
    photos = [item.photo for item in out.items]
    numbers = [str(i) for i in range(1, len(photos) + 1)]  # what U2 / V2 refer to
    try:
        sent = await send_album(send, target, photos, numbers, f"imagine-{reply.turn_id}", job)
    except asyncio.CancelledError:  # stopped: the photos that reached Telegram are paid for
        await settle_landed(job)
        raise
    arrived = [[ref_of(m)] if m is not None else [] for m in sent]
    if not any(arrived):
        raise RuntimeError("no photo of the batch arrived")
    await out.sent_each(arrived)
    shown = {turn for turn, refs in zip(reply.candidates, arrived, strict=False) if refs}
    actions = [a for a in reply.actions if a.index is None or a.turn_id in shown]
    text = reply.text
    missing = len(photos) - len(shown)
    if missing:
        text += "\n" + api.t(reply.locale, "telegram.batch_undelivered", count=missing)
    keyboard = batch_keyboard(actions, lambda a: api.button_label(reply.locale, a))
    try:
        await send.text(Target(target.chat_id, None, target.thread_id), text, keyboard)
    except TelegramError as err:  # the photos arrived and are paid for; the buttons did not
        log.warning("batch %s: keyboard not delivered (%s)", reply.turn_id, err)


async def send_page(send: Sender, target: Target, photos: Sequence[ImageData],
                    captions: Sequence[str], text: str, keyboard: InlineKeyboardMarkup | None,
                    name: str) -> None:
    """A page of pictures (album) and its text with buttons after it."""
    if photos:
        await send_album(send, target, photos, captions, name)
    await send.text(Target(target.chat_id, None, target.thread_id), text, keyboard)
