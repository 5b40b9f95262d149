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

from adapters.base import Capabilities
from adapters.telegram.keyboards import result_keyboard
from adapters.telegram.translate import ref_of
from bot import images
from bot.domain import ImageData, Reply
from bot.images import Budget
from bot.messages import Messages
from bot.service import ImagineService

log = logging.getLogger(__name__)
T = TypeVar("T")

#: sendPhoto: <= 10 MB, width + height <= 10000, ratio <= 20; Telegram rescales to ~2560 px.
PHOTO_BUDGET = Budget(max_bytes=10_000_000, max_side=2560, max_sum_wh=10_000, max_ratio=20,
                      formats=("image/jpeg", "image/png"))
#: sendDocument: bots upload at most 50 MB.
DOCUMENT_BUDGET = Budget(max_bytes=50_000_000, formats=("image/png", "image/jpeg", "image/webp"))
CAPABILITIES = Capabilities(upload_limit=50_000_000, caption_limit=1024, files_per_message=10,
                            buttons=True, photo_budget=PHOTO_BUDGET,
                            document_budget=DOCUMENT_BUDGET)
TEXT_LIMIT = 4096
#: 2K and 4K results (long side >= 2048) also go out as a file: the photo is recompressed.
ORIGINAL_FROM_SIDE = 2000
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


class Renderer:
    """Sends core replies to Telegram and reports delivery back to the core."""

    def __init__(self, bot: Bot, service: ImagineService, messages: Messages,
                 retry_delays: Sequence[float] = SEND_RETRY_DELAYS) -> None:
        self.bot = bot
        self.service = service
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
        """Show a reply; bind what was sent (settles credits) or refund when nothing arrived."""
        if not reply.text and not reply.images:
            return  # a banned user who was already told
        if not reply.images or reply.turn_id is None:
            await self.text(target, reply.text)
            return
        timings: dict[str, float] = {}
        try:
            sent = await self._send_images(reply, target, timings)
        except Exception:
            log.exception("sending result %s to chat %s failed", reply.turn_id, target.chat_id)
            sent = []
        if sent:
            await self.service.bind(reply.turn_id, [ref_of(m) for m in sent], timings)
            return
        await self.service.undeliverable(reply.turn_id)
        await self.text(target, self.messages.t(reply.locale, "telegram.undeliverable"))

    async def _send_images(self, reply: Reply, target: Target,
                           timings: dict[str, float]) -> list[Message]:
        keyboard = result_keyboard(reply.actions, self.messages, reply.locale)
        caption = markup(reply.text, CAPABILITIES.caption_limit)
        sent: list[Message] = []
        for index, image in enumerate(reply.images):
            first = index == 0
            name = f"imagine-{reply.turn_id}-{index + 1}"
            try:
                sent += await self._send_one(image, target, name, caption if first else None,
                                             keyboard if first else None, reply.locale, timings)
            except Exception:
                log.exception("image %d of %s not delivered", index + 1, reply.turn_id)
        return sent

    async def _send_one(self, image: ImageData, target: Target, name: str, caption: str | None,
                        keyboard: InlineKeyboardMarkup | None, locale: str,
                        timings: dict[str, float]) -> list[Message]:
        photo = await timed(timings, "fit", images.fit(image, PHOTO_BUDGET))
        try:
            message = await timed(timings, "upload", self._send(
                "sendPhoto", lambda: self.bot.send_photo(
                    target.chat_id, photo.data, caption=caption, parse_mode=ParseMode.HTML,
                    reply_markup=keyboard, reply_parameters=target.reply,
                    message_thread_id=target.thread_id, filename=f"{name}.{photo.extension}")))
        except BadRequest as err:
            log.warning("sendPhoto refused (%s); sending the image as a file", err)
            return [await self._document(image, target, name, caption, keyboard,
                                         target.reply_to, timings)]
        sent = [message]
        width, height = image.width, image.height
        if not width or not height:
            _, width, height = await images.probe(image.data)
        if photo is not image or max(width, height) >= ORIGINAL_FROM_SIDE:
            note = self.messages.t(locale, "telegram.original", width=width, height=height,
                                   size_mb=f"{len(image.data) / 1e6:.1f}")
            try:
                sent.append(await self._document(image, target, name, markup(note, 1024), None,
                                                 message.message_id, timings))
            except TelegramError as err:
                log.warning("original file not delivered (%s); the photo was", err)
        return sent

    async def _document(self, image: ImageData, target: Target, name: str, caption: str | None,
                        keyboard: InlineKeyboardMarkup | None, reply_to: int | None,
                        timings: dict[str, float]) -> Message:
        original = await timed(timings, "fit", images.fit(image, DOCUMENT_BUDGET))
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
