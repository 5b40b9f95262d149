"""Telegram objects -> core values: actors, chats, message refs, answer targets, commands, references."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from telegram import Bot, CallbackQuery, Chat, Message, ReplyParameters, User
from telegram.constants import ChatType
from telegram.error import BadRequest

from bot.api import Actor, ChatRef, ImageData, InputTooLarge, MessageRef, UnsupportedImage

PLATFORM = "telegram"
#: Bots may download files of at most 20 MB through the Bot API (getFile refuses larger ones).
DOWNLOAD_LIMIT = 20 * 1024 * 1024
_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]+))?(?:\s+|$)(.*)$", re.S)
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".heic", ".heif", ".avif")


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


@dataclass(frozen=True, slots=True)
class Command:
    """A bot command at the start of a text or caption."""

    name: str
    args: str
    for_us: bool


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file on a message that may serve as a reference image."""

    file_id: str
    size: int | None
    name: str
    is_image: bool


def actor_of(user: User) -> Actor:
    """The core's view of a Telegram user (language from the client's ``language_code``)."""
    return Actor(platform=PLATFORM, user_id=str(user.id), display_name=user.full_name,
                 locale=user.language_code)


def chat_of(chat: Chat, thread: int | None = None) -> ChatRef:
    """The core's view of a chat (supergroups are groups), in forum topic ``thread`` if any."""
    kind: Literal["private", "group", "channel"] = "group"
    if chat.type == ChatType.PRIVATE:
        kind = "private"
    elif chat.type == ChatType.CHANNEL:
        kind = "channel"
    return ChatRef(platform=PLATFORM, chat_id=str(chat.id), kind=kind,
                   topic=str(thread) if thread else None)


def ref(chat_id: int, message_id: int) -> MessageRef:
    """A bindable reference to one message."""
    return MessageRef(platform=PLATFORM, chat_id=str(chat_id), message_id=str(message_id))


def ref_of(message: Message) -> MessageRef:
    """A bindable reference to ``message``."""
    return ref(message.chat_id, message.message_id)


def target_of(message: Message) -> Target:
    """Answer ``message`` in its chat and forum topic."""
    return Target(message.chat_id, message.message_id, thread_of(message))


def press_target(query: CallbackQuery) -> Target | None:
    """Answer a button press under the message that carries the button."""
    message = query.message
    if message is None:
        return None
    thread = thread_of(message) if isinstance(message, Message) else None
    return Target(message.chat.id, message.message_id, thread)


def text_of(message: Message) -> str:
    """The text or caption of a message."""
    return message.text or message.caption or ""


def parse_command(text: str, username: str) -> Command | None:
    """``/imagine@Bot a cat`` -> Command; None when the text does not start with a command."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    name, target, args = match.groups()
    for_us = target is None or target.lower() == username.lower()
    return Command(name=name.lower(), args=args.strip(), for_us=for_us)


def primary(messages: Sequence[Message]) -> Message:
    """The message carrying the text of a batch (albums put the caption on one photo only)."""
    return next((m for m in messages if text_of(m)), messages[0])


def replied(messages: Sequence[Message]) -> Message | None:
    """The message a batch replies to, ignoring the implicit reply of forum topic messages."""
    for message in messages:
        reply = message.reply_to_message
        # In forum topics every message "replies" to the topic's service message.
        if reply is not None and reply.forum_topic_created is None:
            return reply
    return None


def thread_of(message: Message) -> int | None:
    """The forum topic a message belongs to (chat actions need it explicitly)."""
    return message.message_thread_id if message.is_topic_message else None


def attachment_of(message: Message) -> Attachment | None:
    """The photo (largest size) or document of ``message``, if any."""
    if message.photo:
        best = message.photo[-1]
        return Attachment(best.file_id, best.file_size, "photo.jpg", True)
    doc = message.document
    if doc is not None:
        name = doc.file_name or ""
        is_image = (doc.mime_type or "").startswith("image/") or name.lower().endswith(_IMAGE_EXT)
        return Attachment(doc.file_id, doc.file_size, name or doc.mime_type or "file", is_image)
    return None


def check(attachments: Sequence[Attachment], limit: int) -> None:
    """Refuse non-images and files over ``limit`` bytes before downloading anything."""
    for att in attachments:
        if not att.is_image:
            raise UnsupportedImage(att.name)
        if att.size is not None and att.size > limit:
            raise InputTooLarge(att.size / 1e6, limit / 1e6)


async def download(bot: Bot, attachments: Sequence[Attachment], limit: int) -> tuple[ImageData, ...]:
    """Fetch every attachment (concurrently) as raw bytes for the core to validate."""
    async def one(att: Attachment) -> ImageData:
        try:
            file = await bot.get_file(att.file_id)
        except BadRequest as err:
            if "too big" in err.message.lower():
                raise InputTooLarge((att.size or limit + 1) / 1e6, limit / 1e6) from err
            raise
        data = bytes(await file.download_as_bytearray())
        if len(data) > limit:
            raise InputTooLarge(len(data) / 1e6, limit / 1e6)
        return ImageData(data=data, mime="application/octet-stream", name=att.name)

    check(attachments, limit)
    return tuple(await asyncio.gather(*(one(a) for a in attachments)))
