"""Loopback fake of the Telegram Bot API with chat helpers and a harness for the real adapter."""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image

from adapters.telegram import TelegramAdapter, Timing
from bot.bootstrap import Core, build_core
from bot.config import Settings
from bot.domain import Actor, MessageRef, Turn
from bot.providers.base import ImageProvider
from bot.providers.wire.aio_transport import AiohttpTransport
from tests.helpers import photo
from tests.telegram_flood import DRAFT_TEXT_MAX, Bucket, Drafts, Flooded, FloodRules, NoStars

#: A user's photo (the tests import it from here).
png = photo

TOKEN = "123456:TEST-fake-token"
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "Imagine", "username": "ImagineTestBot",
            "can_join_groups": True, "can_read_all_group_messages": False,
            "supports_inline_queries": False}
# https://core.telegram.org/bots/api#sendphoto: "The photo must be at most 10 MB in size. The
# photo's width and height must not exceed 10000 in total. Width and height ratio must be at
# most 20." Telegram's MB here is 10,000,000 bytes, not 10 MiB.
PHOTO_MAX = 10_000_000
DOCUMENT_MAX = 50 * 1024 * 1024
DOWNLOAD_MAX = 20 * 1024 * 1024
CAPTION_MAX = 1024
TEXT_MAX = 4096
CALLBACK_MAX = 64
_JSON = {"reply_markup", "reply_parameters", "media", "entities", "caption_entities", "commands",
         "scope", "allowed_updates", "link_preview_options"}
_INT = {"chat_id", "message_id", "offset", "limit", "timeout", "message_thread_id", "user_id",
        "draft_id"}
_BOOL = {"show_alert", "disable_notification", "drop_pending_updates", "protect_content",
         "disable_content_type_detection", "has_spoiler", "allow_paid_broadcast"}
_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
         "code", "pre", "blockquote", "tg-emoji"}
# https://core.telegram.org/bots/api#getupdates, allowed_updates: "Specify an empty list to
# receive all update types except chat_member, message_reaction, and message_reaction_count
# (default). If not specified, the previous setting will be used." setWebhook takes the same.
DEFAULT_UPDATES_EXCLUDE = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
# answerCallbackQuery: the Bot API page gives no number, but a late answer fails with "query is
# too old and response timeout expired" (e.g. github.com/eternnoir/pyTelegramBotAPI/issues/1615
# saw it at ~20 s, others at 5-15 s); 10 s is the strict end of what bots meet.
CALLBACK_ANSWER_DEADLINE = 10.0
_ACTIONS = {"typing", "upload_photo", "record_video", "upload_video", "record_voice",
            "upload_voice", "upload_document", "choose_sticker", "find_location",
            "record_video_note", "upload_video_note"}


@dataclass(frozen=True, slots=True)
class FakeUser:
    """A Telegram user on the client side."""

    id: int
    first_name: str
    language_code: str | None = "en"

    def as_dict(self) -> dict[str, Any]:
        """Bot API ``User``."""
        out: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.language_code:
            out["language_code"] = self.language_code
        return out

    @property
    def actor(self) -> Actor:
        """The core's view of this user."""
        return Actor("telegram", str(self.id), self.first_name, self.language_code)


ALICE = FakeUser(1001, "Alice")
BOB = FakeUser(1002, "Bob")
CAROL = FakeUser(1003, "Carol", "zh-hans")
ADMIN = FakeUser(9001, "Root")


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after


@dataclass(slots=True)
class Call:
    """One recorded Bot API call and what the fake answered."""

    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    ok: bool
    result: Any = None
    error: str = ""
    at: float = field(default_factory=time.monotonic)

    @property
    def message(self) -> dict[str, Any]:
        """The Message the call produced."""
        assert isinstance(self.result, dict) and "message_id" in self.result, self.result
        return self.result

    @property
    def text(self) -> str:
        """What the user sees: the text or caption, HTML parsed."""
        if isinstance(self.result, dict):
            return str(self.result.get("text") or self.result.get("caption") or "")
        raw = self.params.get("text") or self.params.get("caption") or ""
        return parse_html(raw) if self.params.get("parse_mode") == "HTML" else raw

    @property
    def buttons(self) -> list[str]:
        """callback_data of every inline button."""
        rows = (self.params.get("reply_markup") or {}).get("inline_keyboard", [])
        return [b.get("callback_data", "") for row in rows for b in row]

    @property
    def button_texts(self) -> list[str]:
        """Labels of every inline button."""
        rows = (self.params.get("reply_markup") or {}).get("inline_keyboard", [])
        return [b["text"] for row in rows for b in row]

    @property
    def reply_to(self) -> int | None:
        """The message id this call replies to."""
        rp = self.params.get("reply_parameters") or {}
        return rp.get("message_id")

    @property
    def chat_id(self) -> int | None:
        """The chat the call targets."""
        return self.params.get("chat_id")


def utf16_len(text: str) -> int:
    """Length as Telegram counts it."""
    return len(text.encode("utf-16-le")) // 2


def parse_html(text: str) -> str:
    """Validate Telegram HTML (as the server does) and return the visible text."""
    out: list[str] = []
    stack: list[str] = []
    pos = 0
    for match in re.finditer(r"<|&", text):
        if match.start() < pos:
            continue
        out.append(text[pos:match.start()])
        if match.group() == "&":
            ent = re.match(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);", text[match.start():])
            if ent is None:
                raise ApiError(400, "Bad Request: can't parse entities: Character '&' is "
                                    f"reserved and must be escaped (offset {match.start()})")
            out.append(html.unescape(ent.group()))
            pos = match.start() + len(ent.group())
            continue
        tag = re.match(r"<(/?)([a-zA-Z-]+)(\s[^<>]*)?>", text[match.start():])
        if tag is None or tag.group(2).lower() not in _TAGS:
            raise ApiError(400, "Bad Request: can't parse entities: Unsupported start tag at "
                                f"byte offset {match.start()}")
        name = tag.group(2).lower()
        if tag.group(1):
            if not stack or stack.pop() != name:
                raise ApiError(400, f"Bad Request: can't parse entities: Unmatched end tag {name}")
        else:
            stack.append(name)
        pos = match.start() + len(tag.group())
    out.append(text[pos:])
    if stack:
        raise ApiError(400, "Bad Request: can't parse entities: Can't find end tag")
    return "".join(out)


def _decode(key: str, value: str) -> Any:
    if key in _JSON:
        return json.loads(value)
    if key in _INT and re.fullmatch(r"-?\d+", value):
        return int(value)
    if key in _BOOL:
        return value.lower() == "true"
    return value


class FakeTelegram:
    """The fake Bot API server and the client-side view of its chats."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.chats: dict[int, dict[str, Any]] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.webhook: dict[str, Any] | None = None
        self.max_poll = 1.0
        #: The bot's update subscription (None: never set, so Telegram's default list).
        self.allowed_updates: list[str] | None = None
        #: Updates Telegram never created because the bot did not subscribe to their type.
        self.dropped: list[dict[str, Any]] = []
        self.callback_deadline = CALLBACK_ANSWER_DEADLINE
        #: Telegram's sending limits (None: unlimited, for tests about something else).
        self.flood: FloodRules | None = FloodRules()
        self.drafts = Drafts()
        #: Seconds the answer to a method takes to come back after Telegram acted on it (a slow
        #: link back): the message exists while the bot still waits for the answer.
        self.answer_after: dict[str, float] = {}
        self._updates: list[dict[str, Any]] = []
        self._confirmed = 0
        self._ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._queries: dict[str, dict[str, Any]] = {}
        self._failures: dict[str, list[ApiError]] = {}
        self._consumed: set[int] = set()
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pushes: set[asyncio.Task[None]] = set()
        self.port = 0

    # ----- server ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a random port the first time, the same one after an outage)."""
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def go_offline(self) -> None:
        """A network drop: close the listener and every open connection (state is kept)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def go_online(self) -> None:
        """The network is back, on the same port."""
        await self.start()

    async def stop(self) -> None:
        """Close the server."""
        self._closing.set()
        for task in self._pushes:
            task.cancel()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """For ``telegram.base_url`` (python-telegram-bot appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``telegram.base_file_url``."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    async def _read(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        if request.content_type == "application/json":
            raw = await request.json()
            return {k: (_decode(k, json.dumps(v)) if k in _JSON else v) for k, v in raw.items()}, {}
        form = await request.post() if request.method == "POST" else request.query
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
            else:
                params[key] = _decode(key, str(value))
        return params, files

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, files = await self._read(request)
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401,
                                      "description": "Unauthorized"}, status=401)
        handler = getattr(self, f"_m_{method}", None)
        try:
            if handler is None:
                raise ApiError(404, "Not Found")
            pending = self._failures.get(method)
            if pending:
                raise pending.pop(0)
            buckets = self._flood_check(method, params)
            result = await handler(params, files)
            if self.flood is not None:
                self.flood.spend(buckets, params)
        except ApiError as err:
            self._record(Call(method, params, files, False, error=err.description))
            body: dict[str, Any] = {"ok": False, "error_code": err.code,
                                    "description": err.description}
            if err.retry_after is not None:
                body["parameters"] = {"retry_after": err.retry_after}
            return web.json_response(body, status=err.code)
        self._record(Call(method, params, files, True, result))
        if method in self.answer_after:
            await asyncio.sleep(self.answer_after[method])
        return web.json_response({"ok": True, "result": result})

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        for data, file_path in self.files.values():
            if file_path == path:
                return web.Response(body=data)
        return web.Response(status=404)

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._changed.set()

    def _flood_check(self, method: str, params: dict[str, Any]) -> list[Bucket]:
        if self.flood is None:
            return []
        chat = self.chats.get(params.get("chat_id", 0)) or {}
        try:
            return self.flood.check(method, params, chat.get("type", "private") != "private")
        except Flooded as err:
            raise ApiError(429, str(err), err.retry_after) from None
        except NoStars as err:
            raise ApiError(400, str(err)) from None

    def counts(self, chat: dict[str, Any] | None = None, *, ok: bool = True) -> Counter[str]:
        """Calls by method (``chat``'s only when given), answered ok or not."""
        return Counter(c.method for c in self.calls if c.ok == ok and (
            chat is None or c.chat_id == chat["id"]))

    # ----- state helpers -----------------------------------------------------------------------

    def _chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self.chats.get(params.get("chat_id", 0))
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def _message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _store(self, chat: dict[str, Any], sender: dict[str, Any], **fields: Any) -> dict[str, Any]:
        message = {"message_id": self._message_id(chat["id"]), "date": int(time.time()),
                   "chat": chat, "from": sender,
                   **{k: v for k, v in fields.items() if v is not None}}
        if sender is BOT_USER:  # the client drops the chat's draft when the bot's message lands
            for key in [k for k in self.drafts.shown if k[0] == chat["id"]]:
                self.drafts.message_arrived(*key)
        self.messages[(chat["id"], message["message_id"])] = message
        return message

    def _register_file(self, data: bytes, folder: str, ext: str) -> str:
        n = len(self.files) + 1
        file_id = f"F{n:05d}{'x' * 20}"
        self.files[file_id] = (data, f"{folder}/file_{n}.{ext}")
        return file_id

    @staticmethod
    def _dims(data: bytes) -> tuple[int, int] | None:
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.size
        except Exception:
            return None

    def _photo_sizes(self, data: bytes, file_size: int | None = None) -> list[dict[str, Any]]:
        dims = self._dims(data) or (0, 0)
        file_id = self._register_file(data, "photos", "jpg")
        w, h = dims
        k = min(1.0, 2560 / max(w, h, 1))  # Telegram keeps at most ~2560 px of a photo
        return [{"file_id": file_id + "s", "file_unique_id": file_id[:8] + "s",
                 "width": max(1, int(w * 90 / max(w, h, 1))),
                 "height": max(1, int(h * 90 / max(w, h, 1))), "file_size": 1000},
                {"file_id": file_id, "file_unique_id": file_id[:8], "width": int(w * k),
                 "height": int(h * k), "file_size": file_size or len(data)}]

    def _reply_to(self, chat_id: int, params: dict[str, Any]) -> dict[str, Any] | None:
        rp = params.get("reply_parameters")
        if not rp:
            return None
        target = self.messages.get((rp.get("chat_id", chat_id), rp["message_id"]))
        if target is None and not rp.get("allow_sending_without_reply"):
            raise ApiError(400, "Bad Request: message to be replied not found")
        return {k: v for k, v in target.items() if k != "reply_to_message"} if target else None

    def _visible(self, params: dict[str, Any], key: str, limit: int, too_long: str) -> str | None:
        raw = params.get(key)
        if raw is None:
            return None
        text = parse_html(raw) if params.get("parse_mode") == "HTML" else raw
        if utf16_len(text) > limit:
            raise ApiError(400, f"Bad Request: {too_long}")
        return text

    @staticmethod
    def _markup(params: dict[str, Any]) -> dict[str, Any] | None:
        markup = params.get("reply_markup")
        if markup is None:
            return None
        for row in markup.get("inline_keyboard", []):
            for button in row:
                if not button.get("text"):
                    raise ApiError(400, "Bad Request: text buttons are unallowed in the inline "
                                        "keyboard")
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode()) <= CALLBACK_MAX:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup

    def _upload(self, params: dict[str, Any], files: dict[str, bytes], key: str) -> bytes:
        value = params.get(key)
        if key in files:
            return files[key]
        if isinstance(value, str) and value.startswith("attach://"):
            name = value.removeprefix("attach://")
            if name in files:
                return files[name]
        if isinstance(value, str) and value in self.files:
            return self.files[value][0]
        raise ApiError(400, f"Bad Request: there is no {key} in the request")

    @staticmethod
    def _check_photo(data: bytes) -> tuple[int, int]:
        if len(data) > PHOTO_MAX:
            raise ApiError(400, "Bad Request: PHOTO_SAVE_FILE_INVALID")
        dims = FakeTelegram._dims(data)
        if dims is None:
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        w, h = dims
        if w + h > 10_000 or max(w, h) / max(1, min(w, h)) > 20:
            raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        return dims

    def _document(self, data: bytes, name: str) -> dict[str, Any]:
        if len(data) > DOCUMENT_MAX:
            raise ApiError(413, "Request Entity Too Large")
        ext = name.rsplit(".", 1)[-1] if "." in name else "bin"
        mime = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
                "webp": "image/webp"}.get(ext.lower(), "application/octet-stream")
        file_id = self._register_file(data, "documents", ext)
        return {"file_id": file_id, "file_unique_id": file_id[:8], "file_name": name,
                "mime_type": mime, "file_size": len(data)}

    # ----- Bot API methods ---------------------------------------------------------------------

    async def _m_getMe(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        return BOT_USER

    async def _m_deleteWebhook(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        self.webhook = None
        return True

    async def _m_setWebhook(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        if not str(p.get("url", "")).startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: bad webhook: invalid URL")
        self.webhook = {"url": p["url"], "secret": p.get("secret_token")}
        self._subscribe(p)
        return True

    async def _m_getWebhookInfo(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        return {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False,
                "pending_update_count": 0}

    async def _m_getUpdates(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        if self.webhook is not None:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        self._subscribe(p)
        if p.get("offset"):
            self._confirmed = max(self._confirmed, int(p["offset"]) - 1)
        deadline = time.monotonic() + min(float(p.get("timeout", 0)), self.max_poll)
        while True:
            pending = [u for u in self._updates if u["update_id"] > self._confirmed]
            left = deadline - time.monotonic()
            if pending or left <= 0 or self._closing.is_set():
                return pending[: int(p.get("limit", 100))]
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def _subscribe(self, p: dict[str, Any]) -> None:
        """Remember ``allowed_updates`` when the call carries it (it persists until changed)."""
        if "allowed_updates" in p and p["allowed_updates"] is not None:
            self.allowed_updates = list(p["allowed_updates"])

    def subscribed(self, kind: str) -> bool:
        """Whether the bot's current subscription lets Telegram create a ``kind`` update."""
        if not self.allowed_updates:
            return kind not in DEFAULT_UPDATES_EXCLUDE
        return kind in self.allowed_updates

    async def _m_sendMessage(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        chat = self._chat(p)
        text = self._visible(p, "text", TEXT_MAX, "message is too long")
        if not (text or "").strip():
            raise ApiError(400, "Bad Request: message text is empty")
        return self._store(chat, BOT_USER, text=text, reply_markup=self._markup(p),
                           reply_to_message=self._reply_to(chat["id"], p))

    async def _m_sendPhoto(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        chat = self._chat(p)
        caption = self._visible(p, "caption", CAPTION_MAX, "message caption is too long")
        markup = self._markup(p)
        data = self._upload(p, f, "photo")
        self._check_photo(data)
        return self._store(chat, BOT_USER, photo=self._photo_sizes(data), caption=caption,
                           reply_markup=markup, reply_to_message=self._reply_to(chat["id"], p))

    async def _m_sendDocument(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        chat = self._chat(p)
        caption = self._visible(p, "caption", CAPTION_MAX, "message caption is too long")
        markup = self._markup(p)
        data = self._upload(p, f, "document")
        name = p.get("filename") or "file.bin"
        return self._store(chat, BOT_USER, document=self._document(data, name), caption=caption,
                           reply_markup=markup, reply_to_message=self._reply_to(chat["id"], p))

    async def _m_sendMediaGroup(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        chat = self._chat(p)
        media = p.get("media") or []
        if not 2 <= len(media) <= 10:
            raise ApiError(400, "Bad Request: wrong number of media in the album")
        # https://core.telegram.org/bots/api#sendmediagroup: "Documents and audio files can be
        # only grouped in an album with messages of the same type."
        kinds = {item.get("type") for item in media}
        if len(kinds) > 1 and kinds & {"document", "audio"}:
            raise ApiError(400, "Bad Request: document can't be mixed with other media types")
        group = f"G{next(self._ids)}"
        reply = self._reply_to(chat["id"], p)
        out = []
        for item in media:
            data = self._upload({"media": item["media"]}, f, "media")
            caption = self._visible(item, "caption", CAPTION_MAX, "message caption is too long")
            if item["type"] == "photo":
                self._check_photo(data)
                extra: dict[str, Any] = {"photo": self._photo_sizes(data)}
            else:
                extra = {"document": self._document(data, "file.bin")}
            out.append(self._store(chat, BOT_USER, media_group_id=group, caption=caption,
                                   reply_to_message=reply, **extra))
        return out

    async def _m_sendChatAction(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        self._chat(p)
        if p.get("action") not in _ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def _m_sendMessageDraft(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        # https://core.telegram.org/bots/api#sendmessagedraft: "Unique identifier for the
        # target private chat"; draft_id "must be non-zero"; text "0-4096 characters after
        # entities parsing. Pass an empty text to show a "Thinking..." placeholder."
        chat = self._chat(p)
        if chat["type"] != "private":
            raise ApiError(400, "Bad Request: TEXTDRAFT_PEER_INVALID")
        draft_id = p.get("draft_id")
        if not isinstance(draft_id, int) or isinstance(draft_id, bool) or draft_id == 0:
            raise ApiError(400, "Bad Request: DRAFT_ID_INVALID")
        text = self._visible(p, "text", DRAFT_TEXT_MAX, "TEXT_TOO_LONG") or ""
        self.drafts.show(chat["id"], p.get("message_thread_id"), p["draft_id"], text)
        return True

    def _own_message(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get((p.get("chat_id", 0), p.get("message_id", 0)))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message["from"]["id"] != BOT_USER["id"]:
            raise ApiError(400, "Bad Request: message can't be edited")
        return message

    async def _m_editMessageText(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        message = self._own_message(p)
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        text = self._visible(p, "text", TEXT_MAX, "MESSAGE_TOO_LONG")
        markup = self._markup(p)
        if text == message["text"] and markup == message.get("reply_markup"):
            raise ApiError(400, "Bad Request: message is not modified: specified new message "
                                "content and reply markup are exactly the same")
        message.update(text=text, edit_date=int(time.time()))
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        return message

    async def _m_editMessageCaption(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        message = self._own_message(p)
        if "text" in message:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption = self._visible(p, "caption", CAPTION_MAX, "message caption is too long")
        # https://core.telegram.org/bots/api#editmessagecaption: an edit that changes nothing
        # fails as editMessageText's does ("message is not modified").
        if caption == message.get("caption") and self._markup(p) == message.get("reply_markup"):
            raise ApiError(400, "Bad Request: message is not modified: specified new message "
                                "content and reply markup are exactly the same")
        message.update(caption=caption, edit_date=int(time.time()))
        message.pop("reply_markup", None)
        if self._markup(p):
            message["reply_markup"] = p["reply_markup"]
        return message

    async def _m_editMessageReplyMarkup(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        message = self._own_message(p)
        markup = self._markup(p)
        if markup == message.get("reply_markup"):
            raise ApiError(400, "Bad Request: message is not modified")
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        return message

    async def _m_deleteMessage(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        if self.messages.pop((p.get("chat_id", 0), p.get("message_id", 0)), None) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        return True

    async def _m_getFile(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        file_id = str(p.get("file_id", ""))
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        data, path = self.files[file_id]
        if len(data) > DOWNLOAD_MAX:
            raise ApiError(400, "Bad Request: file is too big")
        return {"file_id": file_id, "file_unique_id": file_id[:8], "file_size": len(data),
                "file_path": path}

    async def _m_answerCallbackQuery(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        query = self._queries.get(str(p.get("callback_query_id")))
        if query is None or query["answered"] or (
                time.monotonic() - query["pressed"] > self.callback_deadline):
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or "
                                "query ID is invalid")
        if len(p.get("text") or "") > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        query["answered"] = True
        return True

    @staticmethod
    def _scope_key(p: dict[str, Any]) -> tuple[str, str]:
        scope = p.get("scope") or {"type": "default"}
        return (f"{scope['type']}:{scope.get('chat_id', '')}", p.get("language_code") or "")

    async def _m_setMyCommands(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        commands = p.get("commands") or []
        if not 1 <= len(commands) <= 100:
            raise ApiError(400, "Bad Request: BOT_COMMANDS_TOO_MUCH")
        for c in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", c["command"]) or not (
                    1 <= len(c["description"]) <= 256):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        scope = p.get("scope") or {}
        if scope.get("type") == "chat" and scope.get("chat_id") not in self.chats:
            raise ApiError(400, "Bad Request: chat not found")
        self.commands[self._scope_key(p)] = commands
        return True

    async def _m_getMyCommands(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        return self.commands.get(self._scope_key(p), [])

    async def _m_deleteMyCommands(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        self.commands.pop(self._scope_key(p), None)
        return True

    # ----- the client side ---------------------------------------------------------------------

    def private(self, user: FakeUser) -> dict[str, Any]:
        """The private chat with ``user``."""
        return self.chats.setdefault(user.id, {"id": user.id, "type": "private",
                                               "first_name": user.first_name})

    def group(self, chat_id: int = -1001234567890, title: str = "Group",
              kind: str = "supergroup") -> dict[str, Any]:
        """A group or supergroup the bot is in."""
        return self.chats.setdefault(chat_id, {"id": chat_id, "type": kind, "title": title})

    def topic(self, group: dict[str, Any], name: str, user: FakeUser = ALICE) -> int:
        """Open a forum topic in ``group``; returns its message_thread_id."""
        group["is_forum"] = True
        created = self._store(group, user.as_dict(),
                              forum_topic_created={"name": name, "icon_color": 7322096})
        created["message_thread_id"] = created["message_id"]
        return int(created["message_id"])

    def _push(self, kind: str, payload: dict[str, Any]) -> None:
        update = {"update_id": next(self._ids) + 700_000, kind: payload}
        if not self.subscribed(kind):
            self.dropped.append(update)
            return
        if self.webhook is not None:
            task = asyncio.get_running_loop().create_task(self._post(update))
            self._pushes.add(task)
            task.add_done_callback(self._pushes.discard)
        else:
            self._updates.append(update)
            self._changed.set()

    async def _post(self, update: dict[str, Any]) -> None:
        assert self.webhook is not None
        self._session = self._session or aiohttp.ClientSession()
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook["secret"] or ""}
        for _ in range(20):
            with contextlib.suppress(aiohttp.ClientError):
                async with self._session.post(self.webhook["url"], json=update,
                                              headers=headers) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)

    def user_sends(self, text: str | None = None, *, user: FakeUser = ALICE,
                   chat: dict[str, Any] | None = None, reply_to: dict[str, Any] | None = None,
                   photo: bytes | None = None, document: tuple[bytes, str, str] | None = None,
                   caption: str | None = None, media_group_id: str | None = None,
                   thread_id: int | None = None) -> dict[str, Any]:
        """A user message arrives at the bot; returns the Message as the bot will see it."""
        chat = chat or self.private(user)
        fields: dict[str, Any] = {"text": text, "caption": caption,
                                  "media_group_id": media_group_id}
        for key, value in (("text", text), ("caption", caption)):
            if value and value.startswith("/"):
                fields["entities" if key == "text" else "caption_entities"] = [
                    {"type": "bot_command", "offset": 0, "length": len(value.split()[0])}]
        if photo is not None:
            fields["photo"] = self._photo_sizes(photo)
        if document is not None:
            data, name, mime = document
            file_id = self._register_file(data, "documents", name.rsplit(".", 1)[-1])
            fields["document"] = {"file_id": file_id, "file_unique_id": file_id[:8],
                                  "file_name": name, "mime_type": mime, "file_size": len(data)}
        if reply_to is not None:
            current = self.messages.get((chat["id"], reply_to["message_id"]), reply_to)
            fields["reply_to_message"] = {k: v for k, v in current.items()
                                          if k != "reply_to_message"}
        if thread_id is not None:
            fields.update(message_thread_id=thread_id, is_topic_message=True)
            if reply_to is None:  # Telegram: a topic message "replies" to the topic's creation
                fields["reply_to_message"] = self.messages[(chat["id"], thread_id)]
        message = self._store(chat, user.as_dict(), **fields)
        self._push("message", message)
        return message

    def press(self, message: dict[str, Any], data: str, *, user: FakeUser = ALICE) -> str:
        """``user`` presses the inline button with ``data`` (a prefix is enough) on a message."""
        current = self.messages.get((message["chat"]["id"], message["message_id"]))
        assert current is not None, "the message is gone"
        rows = (current.get("reply_markup") or {}).get("inline_keyboard", [])
        found = [b["callback_data"] for row in rows for b in row
                 if b.get("callback_data", "").startswith(data)]
        assert found, f"no button {data!r} on the message; it has {rows}"
        query_id = str(next(self._ids) + 900_000)
        self._queries[query_id] = {"answered": False, "pressed": time.monotonic()}
        self._push("callback_query", {"id": query_id, "from": user.as_dict(),
                                      "message": current, "chat_instance": "42" + str(
                                          current["chat"]["id"]), "data": found[0]})
        return query_id

    def fail_next(self, method: str, times: int = 1, *, code: int = 429, retry_after: int = 1,
                  description: str | None = None) -> None:
        """The next ``times`` calls of ``method`` fail (429 with retry_after by default)."""
        text = description or (f"Too Many Requests: retry after {retry_after}" if code == 429
                               else "Bad Request: injected failure")
        errors = [ApiError(code, text, retry_after if code == 429 else None)
                  for _ in range(times)]
        self._failures.setdefault(method, []).extend(errors)

    def calls_of(self, method: str, *, ok: bool = True) -> list[Call]:
        """Every recorded call of ``method``."""
        return [c for c in self.calls if c.method == method and c.ok == ok]

    async def wait_for(self, method: str, predicate: Callable[[Call], bool] | None = None, *,
                       timeout: float = 10.0, ok: bool = True,  # noqa: ASYNC109
                       chat: dict[str, Any] | None = None) -> Call:
        """The next not-yet-seen call of ``method`` matching ``predicate`` (waits for it)."""
        deadline = time.monotonic() + timeout
        while True:
            for index, call in enumerate(self.calls):
                if (index not in self._consumed and call.method == method and call.ok == ok
                        and (chat is None or call.chat_id == chat["id"])
                        and (predicate is None or predicate(call))):
                    self._consumed.add(index)
                    return call
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [(c.method, c.ok, c.text[:60]) for c in self.calls[-15:]]
                raise AssertionError(f"no {method} within {timeout} s; last calls: {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.2))

    async def expect_none(self, method: str, predicate: Callable[[Call], bool] | None = None,
                          *, within: float = 0.6) -> None:
        """Assert that no new call of ``method`` (matching ``predicate``) happens for a while."""
        with contextlib.suppress(AssertionError):
            call = await self.wait_for(method, predicate, timeout=within)
            raise RuntimeError(f"unexpected {method}: {call.params}")


#: Progress as tests want it: snappy loops, status edits every 3 s in groups too.
FAST = Timing(action_interval=4.0, edit_interval=3.0, group_edit_interval=3.0, tick=0.1)


@dataclass(slots=True)
class BotHarness:
    """A running TelegramAdapter (real PTB Application + Core) talking to the fake."""

    fake: FakeTelegram
    settings: Settings
    providers: dict[str, ImageProvider] | None = None
    timing: Timing = FAST
    core: Core | None = None
    adapter: TelegramAdapter | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Build a Core on the data dir and run a fresh adapter until it is polling."""
        self.core = build_core(self.settings, providers=self.providers)
        await self.core.start()
        self._stop = asyncio.Event()
        self.adapter = TelegramAdapter(self.core.api, token=self.fake.token, timing=self.timing,
                                       poll_timeout=1,  # the transport run.py gives it
                                       transport=AiohttpTransport)
        self._task = asyncio.create_task(self.adapter.run(self._stop))
        deadline = time.monotonic() + 10
        while not self.adapter.connected:
            if self._task.done():
                self._task.result()
            assert time.monotonic() < deadline, "adapter did not connect"
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop the adapter, then the core."""
        self._stop.set()
        task, core, self._task, self.core = self._task, self.core, None, None
        if task is not None:
            await asyncio.wait_for(task, 30)
        if core is not None:
            await core.stop(grace=0)

    async def restart(self) -> None:
        """A process restart: new Application and new Core on the same data dir."""
        await self.stop()
        await self.start()

    @property
    def c(self) -> Core:
        """The running core."""
        assert self.core is not None
        return self.core

    async def turn(self, message: dict[str, Any], wait: float = 5.0) -> Turn:
        """The turn a bot message shows (binding follows the send, so this waits for it)."""
        ref = MessageRef("telegram", str(message["chat"]["id"]), str(message["message_id"]))
        deadline = time.monotonic() + wait
        while (turn := await self.c.service.turn_for(ref)) is None:
            assert time.monotonic() < deadline, f"message {message['message_id']} is not bound"
            await asyncio.sleep(0.02)
        return turn

    async def ledger(self, user: FakeUser, expect: list[str] | None = None,
                     wait: float = 5.0) -> list[str]:
        """The kinds of the user's ledger rows, oldest first (waits until ``expect`` if given)."""
        deadline = time.monotonic() + wait
        while True:
            kinds = [e.kind for e in await self.c.store.ledger(f"telegram:{user.id}")]
            if expect is None or kinds == expect or time.monotonic() > deadline:
                return kinds
            await asyncio.sleep(0.02)


@asynccontextmanager
async def running_bot(settings_factory: Callable[..., Settings], *,
                      providers: dict[str, ImageProvider] | None = None, timing: Timing = FAST,
                      **sections: Any) -> AsyncIterator[BotHarness]:
    """Start the fake and the bot (settings sections merged over test defaults)."""
    fake = FakeTelegram()
    await fake.start()
    telegram = {"base_url": fake.base_url, "base_file_url": fake.base_file_url,
                "album_debounce_seconds": 0.2, **sections.pop("telegram", {})}
    limits = {"shutdown_grace_seconds": 1.0, **sections.pop("limits", {})}
    harness = BotHarness(fake, settings_factory(telegram=telegram, limits=limits, **sections),
                         providers, timing)
    try:
        await harness.start()
        yield harness
    finally:
        with contextlib.suppress(Exception):
            await harness.stop()
        await fake.stop()


