"""Guest mode for the fake Bot API: summons from chats the bot has not joined, and their answers.

As Telegram documents them (Bot API 10.0, https://core.telegram.org/bots/api-changelog;
https://core.telegram.org/bots/api#answerguestquery; the MTProto side,
https://core.telegram.org/api/bots/guest-mode):

- a user mentions the bot's @username in a chat it is not a member of; the username must resolve
  to a bot with guest mode on (``getMe`` says ``supports_guest_queries``), in any non-secret
  private chat, group or supergroup "except for groups/supergroups with content protection";
- the bot receives ``Update.guest_message`` ("New guest message. The bot can use the field
  Message.guest_query_id and the method answerGuestQuery to send a message in response") only
  when it subscribes to it (``allowed_updates``, as for every update type);
- ``answerGuestQuery(guest_query_id, result)`` takes one InlineQueryResult and returns a
  SentGuestMessage ``{inline_message_id}``; the result is posted into that chat. A query is
  answered once. Results are checked as the InlineQueryResult pages say: ``id`` 1-64 bytes, a
  cached photo's ``photo_file_id`` "a valid file identifier of the photo", captions of at most
  1024 characters, an article's ``title`` and ``input_message_content`` required.

The Bot API names no deadline for a guest answer, so the fake sets none.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from bot.config import Settings
from bot.providers.base import ImageProvider
from tests.fake_telegram import (
    BOT_USER,
    CAPTION_MAX,
    FAST,
    TEXT_MAX,
    ApiError,
    BotHarness,
    FakeTelegram,
    FakeUser,
    parse_html,
    utf16_len,
)

_RESULT_TYPES = {"article", "photo", "gif", "mpeg4_gif", "video", "audio", "voice", "document",
                 "location", "venue", "contact", "game", "sticker"}
_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"


@dataclass
class GuestPost:
    """A message a guest answer put into the summoning chat."""

    query_id: str
    chat: dict[str, Any]
    caller: dict[str, Any]
    inline_message_id: str
    result: dict[str, Any]

    @property
    def text(self) -> str:
        """What the chat reads: the caption or the article's message text (HTML parsed)."""
        content = self.result.get("input_message_content") or {}
        raw = self.result.get("caption") or content.get("message_text") or ""
        html = (self.result.get("parse_mode") or content.get("parse_mode")) == "HTML"
        return parse_html(raw) if html else raw


@dataclass
class GuestBook:
    """Queries asked and what answered them."""

    enabled: bool = True
    queries: dict[str, dict[str, Any]] = field(default_factory=dict)
    posts: list[GuestPost] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class GuestTelegram(FakeTelegram):
    """The fake Bot API with guest mode (on for the bot unless ``guest_mode=False``)."""

    def __init__(self, *, guest_mode: bool = True) -> None:
        super().__init__()
        self.guests = GuestBook(enabled=guest_mode)

    async def _m_getMe(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        return {**BOT_USER, "supports_guest_queries": self.guests.enabled}

    def elsewhere(self, chat_id: int = -1009876543210, title: str = "Elsewhere",
                  protected: bool = False) -> dict[str, Any]:
        """A supergroup the bot has not joined (not in ``chats``: the bot cannot post there)."""
        chat: dict[str, Any] = {"id": chat_id, "type": "supergroup", "title": title}
        if protected:
            chat["has_protected_content"] = True
        return chat

    def summon(self, text: str, *, user: FakeUser, chat: dict[str, Any],
               reply_to: dict[str, Any] | None = None,
               photo: bytes | None = None) -> str | None:
        """``user`` writes ``text`` (with ``@ImagineTestBot``) in ``chat``; the query id or None.

        None: no query was made (guest mode off, a protected chat, no mention of the bot).
        """
        if (not self.guests.enabled or chat.get("has_protected_content")
                or f"@{BOT_USER['username']}".lower() not in text.lower()):
            return None
        query_id = f"gq{next(self.guests.ids)}{chat['id']}"
        fields: dict[str, Any] = {"guest_query_id": query_id}
        if photo is not None:
            fields.update(photo=self._photo_sizes(photo), caption=text)
        else:
            fields["text"] = text
        if reply_to is not None:
            fields["reply_to_message"] = {k: v for k, v in reply_to.items()
                                          if k != "reply_to_message"}
        message = {"message_id": self._message_id(chat["id"]), "date": 0, "chat": chat,
                   "from": user.as_dict(), **fields}
        self.guests.queries[query_id] = {"chat": chat, "from": user.as_dict(),
                                         "answered": False}
        self._push("guest_message", message)
        return query_id

    def someones_photo(self, chat: dict[str, Any], user: FakeUser,
                       data: bytes) -> dict[str, Any]:
        """A photo posted in a chat the bot has not joined (what a summons may reply to)."""
        return {"message_id": self._message_id(chat["id"]), "date": 0, "chat": chat,
                "from": user.as_dict(), "photo": self._photo_sizes(data)}

    async def _m_answerGuestQuery(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        query_id = str(p.get("guest_query_id") or "")
        query = self.guests.queries.get(query_id)
        if query is None or query["answered"]:
            raise ApiError(400, _TOO_OLD)
        raw = p.get("result")
        result = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(result, dict):
            raise ApiError(400, "Bad Request: result is not an InlineQueryResult")
        self._check_result(result)
        query["answered"] = True
        inline_id = f"IM{len(self.guests.posts) + 1:06d}"
        self.guests.posts.append(GuestPost(query_id, query["chat"], query["from"], inline_id,
                                           result))
        self._changed.set()
        return {"inline_message_id": inline_id}

    def _check_result(self, result: dict[str, Any]) -> None:
        """Refuse what the InlineQueryResult pages refuse (the kinds this bot may send)."""
        kind = result.get("type")
        if kind not in _RESULT_TYPES:
            raise ApiError(400, f"Bad Request: unsupported inline query result type {kind!r}")
        if not 1 <= len(str(result.get("id") or "").encode()) <= 64:
            raise ApiError(400, "Bad Request: RESULT_ID_INVALID")
        if kind == "photo":
            file_id = result.get("photo_file_id")
            if file_id is None and not result.get("photo_url"):
                raise ApiError(400, "Bad Request: photo_file_id or photo_url is required")
            if file_id is not None and file_id not in self.files:
                raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
            self._visible(result, "caption", CAPTION_MAX, "message caption is too long")
        if kind == "article":
            content = result.get("input_message_content") or {}
            if not result.get("title") or not content.get("message_text"):
                raise ApiError(400, "Bad Request: title and input_message_content are required")
            text = content["message_text"]
            visible = parse_html(text) if content.get("parse_mode") == "HTML" else text
            if utf16_len(visible) > TEXT_MAX:
                raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")


@asynccontextmanager
async def running_guest_bot(settings_factory: Callable[..., Settings], *, guest_mode: bool = True,
                            providers: dict[str, ImageProvider] | None = None,
                            **sections: Any) -> AsyncIterator[BotHarness]:
    """Like ``fake_telegram.running_bot``, on a fake with guest mode and a cache chat."""
    fake = GuestTelegram(guest_mode=guest_mode)
    await fake.start()
    cache = fake.group(-1001000000001, "imagine cache", "channel")
    telegram = {"base_url": fake.base_url, "base_file_url": fake.base_file_url,
                "cache_chat_id": cache["id"], **sections.pop("telegram", {})}
    limits = {"shutdown_grace_seconds": 1.0, **sections.pop("limits", {})}
    harness = BotHarness(fake, settings_factory(telegram=telegram, limits=limits, **sections),
                         providers, FAST)
    try:
        await harness.start()
        yield harness
    finally:
        with contextlib.suppress(Exception):
            await harness.stop()
        await fake.stop()
