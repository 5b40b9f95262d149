"""Telegram's verbs for answers: a result as photo (+ original file) under the core's delivery, texts.

What Telegram accepts is declared once, in :data:`CAPABILITIES`; the core fits the images to it
and settles or refunds by itself (docs/architecture.md), so nothing here moves money.

A result goes first (the RESULT lane of adapters/telegram/ratelimit.py, in the order the results'
images were ready: ``Reply.ready_at``) and is never dropped for rate limiting: a 429 is waited
out (``retry_after``) and the send tried again for as long as the result is worth delivering
(``[limits] delivery_retry_hours``). Only a refusal for good (the bot blocked, the chat gone, the
file rejected) makes it undeliverable, and the core refunds it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import html
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from telegram import Bot, InlineKeyboardMarkup, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError, TimedOut

from adapters.telegram.inbound import PLATFORM, Target, ref_of
from adapters.telegram.landing import Landed
from adapters.telegram.ratelimit import Lane, SendBudget, lane, seconds
from adapters.telegram.widgets import result_keyboard
from bot.api import BotApi, Budget, Capabilities, Delivery, Fitted, ImageData, Reply

log = logging.getLogger(__name__)
T = TypeVar("T")

#: sendPhoto: <= 10 MB, width + height <= 10000, ratio <= 20; Telegram rescales to ~2560 px.
#: https://core.telegram.org/bots/api#sendphoto
PHOTO_BUDGET = Budget(max_bytes=10_000_000, max_side=2560, max_sum_wh=10_000, max_ratio=20,
                      formats=("image/jpeg", "image/png"))
#: sendDocument: bots upload at most 50 MB (https://core.telegram.org/bots/api#sending-files).
DOCUMENT_BUDGET = Budget(max_bytes=50_000_000, formats=("image/png", "image/jpeg", "image/webp"))
#: 2K and 4K results (long side >= 2048) also go out as a file: the photo is recompressed.
ORIGINAL_FROM_SIDE = 2000
CAPABILITIES = Capabilities(caption_limit=1024, photo_budget=PHOTO_BUDGET,
                            document_budget=DOCUMENT_BUDGET, original_from_side=ORIGINAL_FROM_SIDE,
                            files_per_message=10)
TEXT_LIMIT = 4096
#: Pauses before re-sending after a transient failure (a 5xx from Telegram's front end or a
#: dropped connection): a paid result is not given up on a blip. A timeout is not retried (the
#: message may have arrived), nor is a 400 (it would fail the same way again).
SEND_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
#: How long a result may wait for a free connection of python-telegram-bot's pool (its default
#: is 1 s, then TimedOut, which a result must not die of: nothing was sent yet).
POOL_WAIT = 120.0
#: A result that will wait longer than this for the sending budget is parked (kept in the
#: store) before it queues: a restart meanwhile sends it again rather than refunding it.
PARK_AFTER = 5.0


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` UTF-16 code units (how Telegram counts), with an ellipsis."""
    if len(text.encode("utf-16-le")) // 2 <= limit:
        return text
    out: list[str] = []
    used = 1
    for ch in text:
        units = 2 if ord(ch) > 0xFFFF else 1
        if used + units > limit:
            break
        out.append(ch)
        used += units
    return "".join(out).rstrip() + "…"


def markup(text: str, limit: int = TEXT_LIMIT) -> str:
    """Plain text cut to the visible ``limit`` and escaped for parse_mode HTML."""
    return html.escape(clip(text, limit), quote=False)


async def timed(timings: dict[str, float], key: str, work: Awaitable[T]) -> T:
    """Await ``work``, adding its duration to ``timings[key]`` (for the job's log line)."""
    start = time.monotonic()
    try:
        return await work
    finally:
        timings[key] = timings.get(key, 0.0) + time.monotonic() - start


class Undelivered(Exception):
    """No message of a result arrived (each failure was logged where it happened)."""


@dataclass(frozen=True, slots=True)
class Sending:
    """One result on its way: the open delivery, where it goes, when waiting stops."""

    out: Delivery
    target: Target
    give_up_at: float
    #: Its messages that reached Telegram so far, in the order they did (landing.py).
    landed: list[Message] = field(default_factory=list)

    async def park(self) -> None:
        """Keep it in the outbox (bot/outbox.py) until it is out: a restart sends it again."""
        await self.out.park(PLATFORM, json.dumps(dataclasses.asdict(self.target)))


async def settle_landed(job: Sending) -> None:
    """A delivery stopped (shutdown): what reached Telegram is paid for, not sent again.

    A batch's photos are its candidates in order (an album lands whole, or photo by photo).
    """
    if not job.landed:
        return
    if job.out.reply.candidates:
        await asyncio.shield(job.out.sent_each([[ref_of(m)] for m in job.landed]))
    else:
        await asyncio.shield(job.out.sent([ref_of(m) for m in job.landed]))


class Sender:
    """Sends texts and results to Telegram; results go through the core's delivery protocol."""

    def __init__(self, bot: Bot, api: BotApi, retry_delays: Sequence[float] = SEND_RETRY_DELAYS,
                 budget: SendBudget | None = None) -> None:
        self.bot = bot
        self.api = api
        self.retry_delays = tuple(retry_delays)
        self.budget = budget
        #: How long a result refused for now (429) keeps being offered.
        self.patience = api.delivery_patience
        #: Telegram refused a paid broadcast once: none is tried again in this process.
        self.paid_refused = False
        #: A paid broadcast went through, so Telegram takes them (Stars, enough users): many
        #: may go at once. Until then one is tried at a time (the rest go free meanwhile), so a
        #: bot without Stars meets the refusal once, not once per result already on its way.
        self.paid_confirmed = False
        self._paid_trial = False

    async def _send(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, repeated after transient failures (see SEND_RETRY_DELAYS)."""
        for delay in (*self.retry_delays, None):
            try:
                return await call()
            except (BadRequest, TimedOut):
                raise
            except NetworkError as err:
                if delay is None:
                    raise
                log.warning("%s failed (%s); retrying in %.0f s", what, err, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _paid(self) -> bool:
        """Pay for this result's send: paid broadcasts are on and the queue is that long."""
        cfg = self.api.settings.telegram
        wanted = bool(cfg.paid_broadcast and not self.paid_refused and self.budget is not None
                      and self.budget.backlog_seconds() > cfg.paid_broadcast_after_seconds)
        if not wanted or self.paid_confirmed:
            return wanted
        if self._paid_trial:
            return False  # the first paid one is still on its way
        self._paid_trial = True
        return True

    def sending(self, out: Delivery, target: Target, patience: float | None = None) -> Sending:
        """An open delivery on its way to ``target``, offered for ``patience`` (default: ours)."""
        return Sending(out, target,
                       time.monotonic() + (self.patience if patience is None else patience))

    async def as_result(self, job: Sending, what: str, call: Callable[[bool], Awaitable[T]]) -> T:
        """``call(paid)`` in the RESULT lane; a 429 is waited out for as long as patience lasts.

        The first 429 parks the delivery in the outbox, and so does a queue of more than
        :data:`PARK_AFTER` seconds ahead of it: a restart meanwhile does not lose it. What
        arrives is added to ``job.landed``, also when the call was cancelled on its way.
        """
        if self.budget is not None and self.budget.backlog_seconds() > PARK_AFTER:
            await job.park()
        while True:
            paid = self._paid()
            trial = paid and not self.paid_confirmed
            try:
                with lane(Lane.RESULT, job.out.reply.ready_at):
                    sent = await self._send(what, functools.partial(call, paid))
                self.paid_confirmed = self.paid_confirmed or paid
                job.landed.extend(m for m in (sent if isinstance(sent, Sequence) else (sent,))
                                  if isinstance(m, Message))
                return sent
            except Landed as stop:
                answers = stop.answer if isinstance(stop.answer, list) else [stop.answer]
                job.landed.extend(Message.de_json(a, self.bot) for a in answers
                                  if isinstance(a, dict))
                raise
            except BadRequest as err:
                if not paid:
                    raise
                # Telegram's conditions for paid broadcasts unmet (Stars, users): free from now on.
                log.warning("paid broadcast refused (%s); results go out free from now on", err)
                self.paid_refused = True
            except RetryAfter as err:
                wait = seconds(err.retry_after)
                if time.monotonic() + wait > job.give_up_at:
                    raise
                await job.park()
                log.info("%s: Telegram asks to wait %.0f s; the result waits", what, wait)
                await asyncio.sleep(wait)
            finally:
                if trial:
                    self._paid_trial = False

    async def text(self, target: Target, text: str,
                   keyboard: InlineKeyboardMarkup | None = None) -> Message:
        """One HTML-escaped text message."""
        return await self._send("sendMessage", lambda: self.bot.send_message(
            target.chat_id, markup(text), parse_mode=ParseMode.HTML, reply_markup=keyboard,
            reply_parameters=target.reply, message_thread_id=target.thread_id))

    async def result(self, reply: Reply, target: Target, patience: float | None = None,
                     parked: bool = False) -> None:
        """Show a result; when none of it arrives the core refunds it and the user is told.

        ``patience``: how long a result refused for now is offered (default: the configured);
        ``parked``: it comes from the outbox (outbox.py) and stays there until it is out.
        """
        if not reply.images or reply.turn_id is None:
            if reply.text:
                await self.text(target, reply.text)
            return
        shown = False
        try:
            async with self.api.delivery(reply, CAPABILITIES, parked) as out:
                job = self.sending(out, target, patience)
                try:
                    await self._images(job)
                except asyncio.CancelledError:
                    await settle_landed(job)
                    raise
                if not job.landed:
                    raise Undelivered()
                shown = True
                await out.sent([ref_of(m) for m in job.landed])
        except Exception as exc:
            if not isinstance(exc, Undelivered):
                log.exception("sending result %s to chat %s failed", reply.turn_id,
                              target.chat_id)
            if not shown:  # shown but not settled: the user has the image; the log says why
                await self.text(target, self.api.t(reply.locale, "telegram.undeliverable"))

    async def _images(self, job: Sending) -> None:
        """Every image, each as photo (+ original file); what arrived is in ``job.landed``."""
        reply = job.out.reply
        keyboard = result_keyboard(reply.actions, self.api.t, reply.locale)
        caption = markup(reply.text, CAPABILITIES.caption_limit)
        for index, item in enumerate(job.out.items):
            first = index == 0
            name = f"imagine-{reply.turn_id}-{index + 1}"
            try:
                await self._one(job, index, item, name, caption if first else None,
                                keyboard if first else None)
            except Exception:
                log.exception("image %d of %s not delivered", index + 1, reply.turn_id)

    async def _one(self, job: Sending, index: int, item: Fitted, name: str, caption: str | None,
                   keyboard: InlineKeyboardMarkup | None) -> None:
        photo, target = item.photo, job.target
        try:
            message = await timed(job.out.timings, "upload", self.as_result(
                job, "sendPhoto", lambda paid: self.bot.send_photo(
                    target.chat_id, photo.data, caption=caption, parse_mode=ParseMode.HTML,
                    reply_markup=keyboard, reply_parameters=target.reply,
                    message_thread_id=target.thread_id, filename=f"{name}.{photo.extension}",
                    allow_paid_broadcast=paid or None, pool_timeout=POOL_WAIT)))
        except BadRequest as err:
            log.warning("sendPhoto refused (%s); sending the image as a file", err)
            await self._document(job, await job.out.file(index), name, caption, keyboard,
                                 target.reply_to)
            return
        if item.original is not None:
            note = self.api.t(job.out.reply.locale, "telegram.original", width=item.width,
                              height=item.height, size_mb=f"{item.size_bytes / 1e6:.1f}")
            try:
                await self._document(job, item.original, name, markup(note, 1024), None,
                                     message.message_id)
            except TelegramError as err:
                log.warning("original file not delivered (%s); the photo was", err)

    async def _document(self, job: Sending, original: ImageData, name: str, caption: str | None,
                        keyboard: InlineKeyboardMarkup | None, reply_to: int | None) -> Message:
        target = job.target
        return await timed(job.out.timings, "upload", self.as_result(
            job, "sendDocument", lambda paid: self.bot.send_document(
                target.chat_id, original.data, caption=caption, parse_mode=ParseMode.HTML,
                reply_markup=keyboard, message_thread_id=target.thread_id,
                reply_parameters=Target(target.chat_id, reply_to).reply,
                filename=f"{name}.{original.extension}", disable_content_type_detection=True,
                allow_paid_broadcast=paid or None, pool_timeout=POOL_WAIT)))

    async def delete(self, refs: Sequence[tuple[int, int]]) -> bool:
        """Delete messages; False when one of them could not be deleted."""
        ok = True
        for chat_id, message_id in refs:
            try:
                await self.bot.delete_message(chat_id, message_id)
            except TelegramError as err:
                log.info("could not delete message %s in %s: %s", message_id, chat_id, err)
                ok = False
        return ok
