"""Requests -> domain values: who is asking, in which chat and language, and what they sent.

A browser is an anonymous visitor with a signed cookie (middleware.visitor sets its id on the
request); the composer's form is streamed, with per-file, field-count and whole-body caps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from aiohttp import BodyPartReader, web

from bot.api import (
    Action,
    Actor,
    BotApi,
    ChatRef,
    ImageData,
    InputTooLarge,
    Options,
    normalize_locale,
    parse_flags,
)

#: The visitor id the middleware attaches to each request (its cookie: its chat).
UID = web.RequestKey("uid", str)
#: Who pays and owns the results: the cookie's id, or the address pool's on a public console.
ACTOR_ID = web.RequestKey("actor_id", str)
#: Uploads are streamed and counted (the composer); this bounds every other body.
MAX_BODY = 1_000_000
#: The one route that takes uploads, and its caps besides the body's size.
UPLOAD_PATH = "/api/jobs"
#: /describe's image comes as an upload too.
DESCRIBE_PATH = "/api/describe"
MAX_FILES = 16
MAX_FIELDS = 32
MAX_FIELD = 8_000
#: How far past the limit an oversized file is read, to tell its size in the error.
MEASURE = 4
#: The operator acts as this admin (the console vouches for it after the token login).
OPERATOR = Actor("web", "operator", display_name="operator", is_admin=True)


class Refusal(Exception):
    """A request the console answers at once, with a translated sentence (middleware.answer)."""

    def __init__(self, text: str, status: int = 400) -> None:
        super().__init__(text)
        self.text = text
        self.status = status


def accept_locale(header: str | None) -> str | None:
    """The first catalog locale named in an Accept-Language header."""
    for part in (header or "").split(","):
        found = normalize_locale(part.split(";", 1)[0].strip())
        if found:
            return found
    return None


def browser_locale(request: web.Request) -> str | None:
    """The browser's language, if the catalogs have it."""
    return accept_locale(request.headers.get("Accept-Language"))


def actor(request: web.Request) -> Actor:
    """The anonymous user behind a request: the browser, or its address pool (see ACTOR_ID)."""
    return Actor("web", request.get(ACTOR_ID) or request[UID], locale=browser_locale(request))


def operator(request: web.Request) -> Actor:
    """The operator, speaking the browser's language."""
    return replace(OPERATOR, locale=browser_locale(request))


def chat(request: web.Request) -> ChatRef:
    """Each browser is its own private chat."""
    return ChatRef("web", request[UID], "private")


def options(fields: dict[str, str]) -> Options:
    """The composer's choices (empty: the visitor's defaults) under the prompt's own flags.

    A flag typed in the prompt (``--size 4K``, ``--n 4``) wins over the composer's menus: it is
    the more deliberate of the two. One parser for every platform (``parse_flags``).
    """
    _, flags = parse_flags(fields.get("prompt", ""))
    n = fields.get("n", "")
    return replace(flags, model=flags.model or fields.get("model") or None,
                   size=flags.size or fields.get("size") or None,
                   aspect=flags.aspect or fields.get("aspect") or None,
                   n=flags.n or (int(n) if n in ("1", "2", "3", "4") else None),
                   style=flags.style or fields.get("style") or None)


def prompt_of(fields: dict[str, str]) -> str:
    """The prompt without its flags."""
    return parse_flags(fields.get("prompt", ""))[0]


async def action(request: web.Request) -> Action | None:
    """The result button a POST carries (None when missing or not one of ours)."""
    raw = (await request.post()).get("action")
    return Action.decode(raw) if isinstance(raw, str) else None


def upload_cap(api: BotApi) -> int:
    """``[web] max_body_mb``, else room for the most references of ``max_input_mb`` + 1 MB."""
    settings = api.settings
    if settings.web.max_body_mb is not None:
        return int(settings.web.max_body_mb * 1_000_000)
    refs = min(MAX_FILES, max((m.max_references for m in api.models.values()), default=1))
    return math.ceil(settings.limits.max_input_mb * 1_000_000) * max(1, refs) + 1_000_000


async def read_form(request: web.Request, t: Callable[..., str], *, body_cap: int,
                    file_limit: int) -> tuple[dict[str, str], list[ImageData]]:
    """Text fields and files, streamed with per-file, field-count and whole-body limits.

    ``t`` gives the refusals' sentences (``web.*`` keys, in the visitor's language); a file over
    ``file_limit`` bytes is the core's InputTooLarge.
    """
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        if any(isinstance(v, str) and len(v.encode()) > MAX_FIELD for v in form.values()):
            raise Refusal(t("web.field_too_long"), 413)
        return {k: v for k, v in form.items() if isinstance(v, str)}, []
    if not request.content_type.startswith("multipart/"):
        raise Refusal(t("web.bad_request"))
    body = _Counter(request, body_cap,
                    Refusal(t("web.body_too_big", limit_mb=f"{body_cap / 1e6:g}"), 413))
    reader = await request.multipart()
    fields: dict[str, str] = {}
    files: list[ImageData] = []
    parts = 0
    while (part := await reader.next()) is not None:
        body.check()
        parts += 1
        if not isinstance(part, BodyPartReader):
            raise Refusal(t("web.bad_request"))
        if parts > MAX_FIELDS + MAX_FILES:
            raise Refusal(t("web.too_many_fields"), 413)
        if part.name != "files":
            data, size = await _read_part(part, MAX_FIELD, body)
            if size > MAX_FIELD:  # refused, not cut: the rest would still have to be read
                raise Refusal(t("web.field_too_long"), 413)
            if part.name:
                fields[part.name] = data.decode("utf-8", "replace")
            continue
        if len(files) >= MAX_FILES:
            raise Refusal(t("web.too_many_files", limit=MAX_FILES))
        data, size = await _read_part(part, file_limit, body)
        if size > file_limit:
            raise InputTooLarge(size / 1e6, file_limit / 1e6)
        if data:
            files.append(ImageData(data, part.headers.get("Content-Type", ""),
                                   name=part.filename or ""))
    body.check()
    return fields, files


class _Counter:
    """Counts the bytes a request body has delivered so far (chunked bodies have no length)."""

    def __init__(self, request: web.Request, cap: int, refusal: Refusal) -> None:
        self._stream = request.content
        self._cap = cap
        self._refusal = refusal

    def check(self) -> None:
        """Refuse once more than the cap has arrived (read-ahead is one small buffer at most)."""
        if self._stream.total_bytes > self._cap:
            raise self._refusal


async def _read_part(part: BodyPartReader, limit: int, body: _Counter) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of a part, and its length (measured up to a few times the limit)."""
    data = bytearray()
    size = 0
    while chunk := await part.read_chunk(65536):
        body.check()
        size += len(chunk)
        if size <= limit:
            data += chunk
        elif size > MEASURE * limit:
            break  # clearly too large: stop reading rather than swallow an endless upload
    return bytes(data), size
