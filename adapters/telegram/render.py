"""Reply -> Telegram messages: fitted photo with caption and buttons, the original as a file."""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, TelegramError, TimedOut

from adapters.telegram.keyboards import result_keyboard
from adapters.telegram.translate import ref_of
from bot.api import BotApi, Budget, Capabilities, Delivery, Fitted, ImageData, Reply
from bot.messages import Messages

log = logging.getLogger(__name__)
T = TypeVar("T")

#: sendPhoto: <= 10 MB, width + height <= 10000, ratio <= 20; Telegram rescales to ~2560 px.
PHOTO_BUDGET = Budget(max_bytes=10_000_000, max_side=2560, max_sum_wh=10_000, max_ratio=20,
                      formats=("image/jpeg", "image/png"))
#: sendDocument: bots upload at most 50 MB.
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


@dataclass(frozen=True, slots=True)
class Target:
    """Where an answer goes: a chat, the message it replies to, the forum topic."""

    chat_id: int
    reply_to: int | None = None
    thread_id: int | None = None

    @property
    def reply(self) -> ReplyParameters | None:
        """Reply parameters that survive the original message being deleted."""
        if self.reply_to is None:
            return None
        return ReplyParameters(message_id=self.reply_to, allow_sending_without_reply=True)


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


async def timed(timings: dict[str, float], key: str, work: Awaitable[T]) -> T:
    """Await ``work``, adding its duration to ``timings[key]`` (for the job's log line)."""
    start = time.monotonic()
    try:
        return await work
    finally:
        timings[key] = timings.get(key, 0.0) + time.monotonic() - start


def markup(text: str, limit: int = TEXT_LIMIT) -> str:
    """Plain text cut to the visible ``limit`` and escaped for parse_mode HTML."""
    return html.escape(clip(text, limit), quote=False)


class Undelivered(Exception):
    """No message of a result arrived (each failure was logged where it happened)."""


class Renderer:
    """Sends core replies to Telegram through the core's delivery protocol."""

    def __init__(self, bot: Bot, api: BotApi, messages: Messages,
                 retry_delays: Sequence[float] = SEND_RETRY_DELAYS) -> None:
        self.bot = bot
        self.api = api
        self.messages = messages
        self.retry_delays = tuple(retry_delays)

    async def _send(self, what: str, call: Callable[[], Awaitable[Message]]) -> Message:
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

    async def text(self, target: Target, text: str,
                   keyboard: InlineKeyboardMarkup | None = None) -> Message:
        """One HTML-escaped text message."""
        return await self._send("sendMessage", lambda: self.bot.send_message(
            target.chat_id, markup(text), parse_mode=ParseMode.HTML, reply_markup=keyboard,
            reply_parameters=target.reply, message_thread_id=target.thread_id))

    async def deliver(self, reply: Reply, target: Target) -> None:
        """Show a result through the core's delivery: it settles what arrived, refunds the rest."""
        if not reply.text and not reply.images:
            return  # a banned user who was already told
        if not reply.images or reply.turn_id is None:
            await self.text(target, reply.text)
            return
        try:
            async with self.api.delivery(reply, CAPABILITIES) as out:
                sent = await self._send_images(out, target)
                if not sent:
                    raise Undelivered()
                await out.sent([ref_of(m) for m in sent])
        except Exception as exc:
            if not isinstance(exc, Undelivered):
                log.exception("sending result %s to chat %s failed", reply.turn_id,
                              target.chat_id)
            await self.text(target, self.messages.t(reply.locale, "telegram.undeliverable"))

    async def _send_images(self, out: Delivery, target: Target) -> list[Message]:
        reply = out.reply
        keyboard = result_keyboard(reply.actions, self.messages, reply.locale)
        caption = markup(reply.text, CAPABILITIES.caption_limit)
        sent: list[Message] = []
        for index, item in enumerate(out.items):
            first = index == 0
            name = f"imagine-{reply.turn_id}-{index + 1}"
            try:
                sent += await self._send_one(out, index, item, target, name,
                                             caption if first else None,
                                             keyboard if first else None)
            except Exception:
                log.exception("image %d of %s not delivered", index + 1, reply.turn_id)
        return sent

    async def _send_one(self, out: Delivery, index: int, item: Fitted, target: Target, name: str,
                        caption: str | None, keyboard: InlineKeyboardMarkup | None
                        ) -> list[Message]:
        photo, timings = item.photo, out.timings
        try:
            message = await timed(timings, "upload", self._send(
                "sendPhoto", lambda: self.bot.send_photo(
                    target.chat_id, photo.data, caption=caption, parse_mode=ParseMode.HTML,
                    reply_markup=keyboard, reply_parameters=target.reply,
                    message_thread_id=target.thread_id, filename=f"{name}.{photo.extension}")))
        except BadRequest as err:
            log.warning("sendPhoto refused (%s); sending the image as a file", err)
            return [await self._document(await out.file(index), target, name, caption, keyboard,
                                         target.reply_to, timings)]
        sent = [message]
        if item.original is not None:
            note = self.messages.t(out.reply.locale, "telegram.original", width=item.width,
                                   height=item.height, size_mb=f"{item.size_bytes / 1e6:.1f}")
            try:
                sent.append(await self._document(item.original, target, name, markup(note, 1024),
                                                 None, message.message_id, timings))
            except TelegramError as err:
                log.warning("original file not delivered (%s); the photo was", err)
        return sent

    async def _document(self, original: ImageData, target: Target, name: str,
                        caption: str | None, keyboard: InlineKeyboardMarkup | None,
                        reply_to: int | None, timings: dict[str, float]) -> Message:
        return await timed(timings, "upload", self._send(
            "sendDocument", lambda: self.bot.send_document(
                target.chat_id, original.data, caption=caption, parse_mode=ParseMode.HTML,
                reply_markup=keyboard, message_thread_id=target.thread_id,
                reply_parameters=Target(target.chat_id, reply_to).reply,
                filename=f"{name}.{original.extension}", disable_content_type_detection=True)))


async def delete_all(bot: Bot, refs: Sequence[tuple[int, int]]) -> bool:
    """Delete messages; False when one of them could not be deleted."""
    ok = True
    for chat_id, message_id in refs:
        try:
            await bot.delete_message(chat_id, message_id)
        except TelegramError as err:
            log.info("could not delete message %s in %s: %s", message_id, chat_id, err)
            ok = False
    return ok
