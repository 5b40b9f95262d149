"""Guest mode: a user summons the bot by @username in a chat it has not joined, and it answers there.

Bot API 10.0 (https://core.telegram.org/bots/api-changelog, May 2026) "Introduced support for
guest mode, allowing bots to receive certain messages and issue replies within chats they are
not a member of": ``Update.guest_message`` is "New guest message. The bot can use the field
Message.guest_query_id and the method answerGuestQuery to send a message in response", and
``answerGuestQuery(guest_query_id, result)`` takes one InlineQueryResult and returns a
SentGuestMessage (``inline_message_id``) (https://core.telegram.org/bots/api#answerguestquery).
python-telegram-bot 22.8 types all of it (``Bot.answer_guest_query``,
``filters.UpdateType.GUEST_MESSAGE``), so no raw API call is needed.

The bot is not in that chat, so nothing can be uploaded there and no progress shown: the job runs,
its image is uploaded to a private cache chat (``[telegram] cache_chat_id``) and the query is
answered with that photo's file id (``InlineQueryResultCachedPhoto``; a file id already made for
the same bytes is reused, e.g. when an answer is retried). Failures are answered as a short text.
The summoning user (``message.from``) is the actor: their quotas, their language. One answer
holds one image, so a guest job makes one (``--n`` is ignored). A photo the summoning message
replies to (or carries) is the reference: "@bot make it night" under someone's picture edits it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from dataclasses import replace
from typing import Any, Literal

from telegram import (
    Chat,
    InlineQueryResultArticle,
    InlineQueryResultCachedPhoto,
    InputTextMessageContent,
    Message,
    Update,
    User,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import TelegramError
from telegram.ext import BaseHandler, ContextTypes, MessageHandler, filters

from adapters.telegram.deliver import CAPABILITIES, markup
from adapters.telegram.inbound import (
    DOWNLOAD_LIMIT,
    PLATFORM,
    Attachment,
    actor_of,
    attachment_of,
    download,
    text_of,
)
from adapters.telegram.runtime import Runtime
from bot.api import (
    Actor,
    BotError,
    ChatRef,
    ImageData,
    ImageRequest,
    InternalError,
    MessageRef,
    NotAllowed,
    Reply,
    parse_flags,
)

log = logging.getLogger(__name__)
#: The update type guest mode arrives as (subscribed only when a cache chat is configured).
GUEST_UPDATES = ["guest_message"]
#: Guest answers are inline messages: bound under their own platform name, never parsed as ints.
GUEST_PLATFORM = f"{PLATFORM}-guest"
#: InlineQueryResultArticle: title is required; a long error keeps its first words there.
_TITLE_LIMIT = 64
_REMEMBERED = 256


def guest_updates(cache_chat_id: int | None, me: User) -> list[str]:
    """The update types guest mode needs: none without a cache chat to answer from.

    ``supports_guest_queries`` ("True, if the bot supports guest queries from chats it is not a
    member of. Returned only in getMe", https://core.telegram.org/bots/api#user) is the switch
    the operator flips for the bot in @BotFather; off, no summons arrive, so the log says so.
    """
    if cache_chat_id is None:
        return []
    if not me.supports_guest_queries:
        log.warning("telegram: [telegram] cache_chat_id is set but guest mode is off for @%s; "
                    "switch it on in @BotFather (see README)", me.username)
    else:
        log.info("telegram: guest mode on (results cached in chat %s)", cache_chat_id)
    return list(GUEST_UPDATES)


def guest_chat(chat: Chat) -> ChatRef:
    """The chat a guest query came from, keyed apart from chats the bot is a member of.

    Message.guest_query_id: the message "belongs to the chat where the guest bot was summoned,
    which may not coincide with other existing bot chats sharing the same identifier".
    """
    kind: Literal["private", "group"] = "private" if chat.type == ChatType.PRIVATE else "group"
    return ChatRef(platform=PLATFORM, chat_id=f"guest:{chat.id}", kind=kind)


class GuestQueries:
    """Answers guest queries: one job per summons, one answer per query."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        #: sha256 of uploaded bytes -> their file id in the cache chat (most recent last).
        self._file_ids: OrderedDict[str, str] = OrderedDict()

    def handlers(self) -> list[BaseHandler[Update, Any, Any]]:
        """The guest_message handler (other message handlers only see ``Update.message``)."""
        return [MessageHandler(filters.UpdateType.GUEST_MESSAGE, self.on_guest)]

    async def on_guest(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A summons: run it in the background (answering may take the whole job)."""
        message = update.guest_message
        if message is None or not message.guest_query_id or message.from_user is None:
            return
        if message.from_user.is_bot:
            return
        self.rt.tasks.spawn(self._serve(message, message.guest_query_id), "guest")

    async def _serve(self, message: Message, query_id: str) -> None:
        assert message.from_user is not None
        actor = actor_of(message.from_user)
        try:
            if not self.rt.allowed(message.chat_id, actor):
                raise NotAllowed()
            await self._answer_result(query_id, message, await self._job(message, actor))
        except BotError as err:
            await self._answer_text(query_id, actor, err)
        except Exception:
            internal = InternalError()
            log.exception("internal error %s (telegram guest, %s)", internal.error_id, actor.key)
            await self._answer_text(query_id, actor, internal)

    async def _job(self, message: Message, actor: Actor) -> Reply:
        api = self.rt.api
        words = re.sub(rf"@{re.escape(self.rt.username)}\b", " ", text_of(message), flags=re.I)
        prompt, options = parse_flags(words.strip())
        files = [a for a in (attachment_of(message), _replied_photo(message)) if a is not None]
        limit = min(DOWNLOAD_LIMIT, int(api.settings.limits.max_input_mb * 1_000_000))
        references = await download(self.rt.bot, files, limit)
        request = ImageRequest(actor=actor, chat=guest_chat(message.chat), prompt=prompt,
                               references=references, options=replace(options, n=1))
        if references:
            return await api.edit(request)
        return await api.imagine(request)

    async def _answer_result(self, query_id: str, message: Message, reply: Reply) -> None:
        if not reply.images or reply.turn_id is None:
            raise InternalError("a guest job ended without an image")
        async with self.rt.api.delivery(reply, CAPABILITIES) as out:
            file_id = await self._file_id(out.items[0].photo)
            result = InlineQueryResultCachedPhoto(
                id=reply.turn_id[:64], photo_file_id=file_id, parse_mode=ParseMode.HTML,
                caption=markup(reply.text, CAPABILITIES.caption_limit))
            sent = await self.rt.bot.answer_guest_query(query_id, result)
            shown = MessageRef(GUEST_PLATFORM, f"guest:{message.chat_id}",
                               sent.inline_message_id)
            await out.sent([shown])

    async def _file_id(self, photo: ImageData) -> str:
        """A file id for ``photo``: one uploaded before, or a new upload to the cache chat."""
        digest = hashlib.sha256(photo.data).hexdigest()
        if (known := self._file_ids.get(digest)) is not None:
            self._file_ids.move_to_end(digest)
            return known
        cache = self.rt.config.cache_chat_id
        if cache is None:
            raise InternalError("guest mode needs [telegram] cache_chat_id")
        posted = await self.rt.bot.send_photo(cache, photo.data, disable_notification=True,
                                              filename=f"guest.{photo.extension}")
        file_id = posted.photo[-1].file_id
        self._file_ids[digest] = file_id
        while len(self._file_ids) > _REMEMBERED:
            self._file_ids.popitem(last=False)
        return file_id

    async def _answer_text(self, query_id: str, actor: Actor, err: BotError) -> None:
        """Answer the query with ``err`` in the user's words (nothing when told before)."""
        try:
            text = (await self.rt.api.error_reply(actor, err)).text
            if not text:
                return
            article = InlineQueryResultArticle(
                id=f"error-{err.key}"[:64], title=text[:_TITLE_LIMIT],
                input_message_content=InputTextMessageContent(markup(text),
                                                              parse_mode=ParseMode.HTML))
            await self.rt.bot.answer_guest_query(query_id, article)
        except TelegramError as exc:
            log.info("could not answer guest query of %s (%s)", actor.key, exc)


def _replied_photo(message: Message) -> Attachment | None:
    """The image the summoning message replies to, if any."""
    replied = message.reply_to_message
    return attachment_of(replied) if replied is not None else None
