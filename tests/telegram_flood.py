"""Telegram's sending limits and message drafts, as the fake Bot API enforces and shows them.

Limits, from the Bots FAQ (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-
avoid-this): "When sending messages inside a particular chat, avoid sending more than one message
per second. We may allow short bursts that go over this limit, but eventually you'll begin
receiving 429 errors"; "the API will not allow more than 30 messages per second or so"; "your bot
will not be able to send more than 20 messages per minute to the same group". Over a limit the
Bot API answers 429 with ``parameters.retry_after`` in whole seconds
(https://core.telegram.org/bots/api#responseparameters). Each limit is a token bucket here: the
documented rate, a short burst on top. ``allow_paid_broadcast`` moves a message from the free
30/s to a paid 1000/s at 0.1 Star each ("Pass True to allow up to 1000 messages per second,
ignoring broadcasting limits for a fee of 0.1 Telegram Stars per message",
https://core.telegram.org/bots/api#sendmessage); the fake counts the Stars spent.

What is metered: messages and their edits. Chat actions are not messages, nor are drafts: a
draft is a typing action carrying text (MTProto's ``sendMessageTextDraftAction``, "Used by bots
to implement live message streaming", https://core.telegram.org/constructor/
sendMessageTextDraftAction), "ephemeral and acts as a temporary 30-second preview"
(https://core.telegram.org/bots/api#sendmessagedraft); clients drop it when a message from the
bot arrives in its thread (TDLib's updatePendingTextMessage: "be deleted whenever any incoming
message from the bot in the message thread is received").
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Bot API methods that send or change a message (each counts once against every bucket).
METERED = frozenset({
    "sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup", "sendAnimation", "sendVideo",
    "sendAudio", "sendVoice", "sendSticker", "copyMessage", "forwardMessage", "editMessageText",
    "editMessageCaption", "editMessageMedia", "editMessageReplyMarkup"})
DRAFT_LIFETIME = 30.0
#: https://core.telegram.org/bots/api#sendmessagedraft: "0-4096 characters after entities parsing".
DRAFT_TEXT_MAX = 4096
STARS_PER_PAID_MESSAGE = 0.1


class NoStars(Exception):
    """A paid broadcast the bot's Stars balance cannot pay for (400; the text is the fake's)."""


class Flooded(Exception):
    """A call over one of the limits: 429 with ``retry_after`` whole seconds."""

    def __init__(self, retry_after: int, which: str) -> None:
        super().__init__(f"Too Many Requests: retry after {retry_after}")
        self.retry_after, self.which = retry_after, which


@dataclass(slots=True)
class Bucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: now)."""
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        """Spend one token (after :meth:`wait` said 0)."""
        self.tokens -= 1


@dataclass(slots=True)
class FloodRules:
    """Telegram's buckets for one bot: in all (free and paid), per chat, per group."""

    rate: float = 30.0
    burst: float = 30.0
    paid_rate: float = 1000.0
    chat_rate: float = 1.0
    chat_burst: float = 3.0
    group_per_minute: float = 20.0
    clock: Callable[[], float] = time.monotonic
    #: Stars withdrawn for paid broadcasts so far; the balance they come from (None: enough).
    stars_spent: float = 0.0
    stars_balance: float | None = None
    #: 429s answered, by which limit ("global", "chat", "group").
    refused: Counter[str] = field(default_factory=Counter)
    _global: Bucket | None = None
    _paid: Bucket | None = None
    _chats: dict[Any, Bucket] = field(default_factory=dict)
    _groups: dict[Any, Bucket] = field(default_factory=dict)

    def check(self, method: str, params: dict[str, Any], is_group: bool) -> list[Bucket]:
        """The buckets the call takes a token from once it succeeds; :class:`Flooded` if empty.

        A refused request (a bad parameter) spends nothing: only a message that is sent counts.
        """
        if method not in METERED:
            return []
        now, chat = self.clock(), params.get("chat_id")
        if params.get("allow_paid_broadcast"):
            if self.stars_balance is not None and self.stars_balance < STARS_PER_PAID_MESSAGE:
                raise NoStars("Bad Request: BALANCE_TOO_LOW")
            self._paid = self._paid or Bucket(self.paid_rate, self.paid_rate)
            overall = self._paid
        else:
            self._global = self._global or Bucket(self.rate, self.burst)
            overall = self._global
        buckets = [("global", overall),
                   ("chat", self._chats.setdefault(chat, Bucket(self.chat_rate, self.chat_burst)))]
        if is_group:
            buckets.append(("group", self._groups.setdefault(
                chat, Bucket(self.group_per_minute / 60, self.group_per_minute))))
        for which, bucket in buckets:
            wait = bucket.wait(now)
            if wait > 0:
                self.refused[which] += 1
                raise Flooded(max(1, math.ceil(wait)), which)
        return [bucket for _, bucket in buckets]

    def spend(self, buckets: list[Bucket], params: dict[str, Any]) -> None:
        """The call :meth:`check` let through was sent: take its tokens (and its Stars)."""
        for bucket in buckets:
            bucket.take()
        if buckets and params.get("allow_paid_broadcast"):
            self.stars_spent += STARS_PER_PAID_MESSAGE
            if self.stars_balance is not None:
                self.stars_balance -= STARS_PER_PAID_MESSAGE


@dataclass(slots=True)
class Draft:
    """A draft as the user sees it until ``until`` (or a message from the bot)."""

    draft_id: int
    text: str
    shown_at: float
    until: float


@dataclass(slots=True)
class Drafts:
    """The drafts each private chat shows, and how long each chat went without one while waiting."""

    clock: Callable[[], float] = time.monotonic
    shown: dict[tuple[int, int | None], Draft] = field(default_factory=dict)
    #: Every draft call by chat: (when, text) in order.
    history: dict[int, list[tuple[float, str]]] = field(default_factory=dict)

    def show(self, chat_id: int, thread_id: int | None, draft_id: int, text: str) -> None:
        """``sendMessageDraft`` succeeded."""
        now = self.clock()
        self.shown[(chat_id, thread_id)] = Draft(draft_id, text, now, now + DRAFT_LIFETIME)
        self.history.setdefault(chat_id, []).append((now, text))

    def message_arrived(self, chat_id: int, thread_id: int | None) -> Draft | None:
        """A message from the bot replaces the thread's draft; the draft it replaced, if live."""
        draft = self.shown.pop((chat_id, thread_id), None)
        return draft if draft is not None and draft.until >= self.clock() else None

    def visible(self, chat_id: int, thread_id: int | None = None) -> Draft | None:
        """The draft the chat shows now, if any."""
        draft = self.shown.get((chat_id, thread_id))
        return draft if draft is not None and draft.until >= self.clock() else None
