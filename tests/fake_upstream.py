"""A loopback fake of the image upstreams: chat completions, generateContent and the Images API.

Each route answers from a scripted queue (``fake.push(route, Reply(...))``), falling back to a
successful answer with a small PNG. A reply can be slow, drop the connection, cut its body short,
send HTML or any status, headers (Retry-After) and JSON (RetryInfo details). Every request is
recorded with its headers and JSON body (or multipart fields). ``/files/NAME`` serves images for
the URL-shaped answers. Use it as a fixture::

    from tests.fake_upstream import fake_upstream_fixture  # noqa: F401

and ask for ``fake_upstream`` in a test's arguments.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import BodyPartReader, web

from bot.domain import ImageData
from tests.helpers import jpeg as jpeg  # the tests' one image maker, for the tests that import it here
from tests.helpers import png

ROUTES = ("chat", "gemini", "images.generate", "images.edit", "models", "gemini.models",
          "files")
#: Google's image models as ``GET /v1beta/models`` lists them on 2026-11-30 (bot/catalog.py).
TODAY = ("gemini-nano-banana-2.1", "gemini-3-pro-image", "gemini-3.1-flash-lite-image",
         "gemini-3.5-flash")
#: Ids Google has shut down: the native route answers them 404 as Google does.
SHUT_DOWN = frozenset({"gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview",
                       "gemini-3.1-flash-image", "gemini-2.5-flash-image"})


def b64(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode()


def data_url(data: bytes, mime: str = "image/png") -> str:
    """A ``data:`` URL."""
    return f"data:{mime};base64,{b64(data)}"



def img(data: bytes, name: str = "") -> ImageData:
    """A PNG reference image for a provider request."""
    return ImageData(data=data, mime="image/png", width=8, height=8, name=name)


class Sleeps(list[float]):
    """Records the sleeps a retry policy asks for instead of sleeping."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(name="sleeps")
def sleeps_fixture() -> Sleeps:
    """The fake sleep the retry policy uses."""
    return Sleeps()


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    json: Any = None
    body: bytes | str | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False  # close the connection without answering
    truncate_at: int | None = None  # announce the full length, send this many bytes, close
    trickle: float = 0.0  # a slow link: the first half of the body, then the rest this much later


@dataclass
class Seen:
    """One recorded request."""

    route: str
    path: str
    headers: dict[str, str]
    json: Any = None
    form: dict[str, list[tuple[str | None, str | None, bytes]]] = field(default_factory=dict)


def chat_body(content: Any = "", *, images: list[Any] | None = None, finish: str = "stop",
              native: str | None = None, refusal: str | None = None) -> dict[str, Any]:
    """A chat.completions answer."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if images is not None:
        message["images"] = images
    if refusal is not None:
        message["refusal"] = refusal
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
    if native is not None:
        choice["native_finish_reason"] = native
    return {"id": "gen-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [choice],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1290, "total_tokens": 1300}}


def gemini_body(parts: list[dict[str, Any]] | None, *, finish: str = "STOP",
                block: str | None = None, **candidate: Any) -> dict[str, Any]:
    """A generateContent answer (``parts=None`` for no candidates at all)."""
    body: dict[str, Any] = {"usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 1290,
                                              "totalTokenCount": 1297}}
    if parts is not None:
        body["candidates"] = [{"content": {"role": "model", "parts": parts},
                               "finishReason": finish, "index": 0, **candidate}]
    if block:
        body["promptFeedback"] = {"blockReason": block}
    return body


#: What the fake's text mode answers for /describe by default.
DESCRIBED = ("1. A red fox curled up asleep in fresh snow, soft morning light, telephoto shot\n"
             "2. Watercolor of a sleeping fox in a snowy forest, muted blues and warm orange\n"
             "3. A cozy storybook illustration of a fox napping under falling snowflakes")


async def _text_only(request: web.Request) -> bool:
    """Whether a generateContent call asks for text alone (``responseModalities ["TEXT"]``)."""
    try:
        body = await request.json()
    except ValueError:
        return False
    config = body.get("generationConfig") if isinstance(body, dict) else None
    return isinstance(config, dict) and config.get("responseModalities") == ["TEXT"]


def images_body(*items: dict[str, Any]) -> dict[str, Any]:
    """An Images API answer."""
    return {"created": 1, "data": list(items)}


def openai_error(status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, **reply: Any) -> Reply:
    """An OpenAI-style error reply."""
    return Reply(status=status, json={"error": {"message": message, "type": type_,
                                                "param": None, "code": code}}, **reply)


def google_error(code: int, status: str, message: str, details: list[Any] | None = None,
                 **reply: Any) -> Reply:
    """A Google-style error reply (``{"error": {code, message, status, details}}``)."""
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return Reply(status=code, json={"error": err}, **reply)


def _openai_key(headers: Mapping[str, str]) -> str:
    """The key in ``Authorization: Bearer KEY``
    (https://platform.openai.com/docs/api-reference/authentication)."""
    auth = headers.get("Authorization", "")
    return auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""


def _google_key(request: web.Request, headers: Mapping[str, str]) -> str:
    """The key in ``x-goog-api-key`` or ``?key=`` (https://ai.google.dev/gemini-api/docs/api-key);
    relays' native routes also take a Bearer token."""
    return (headers.get("x-goog-api-key") or request.query.get("key") or _openai_key(headers))


def shape_problem(route: str, seen: Seen) -> str | None:
    """What the real API would refuse in the request's basic shape, per route.

    Chat completions need ``model`` and a non-empty ``messages`` list
    (https://platform.openai.com/docs/api-reference/chat/create); generateContent needs a
    non-empty ``contents`` list of ``parts`` (https://ai.google.dev/api/generate-content);
    images.generate needs ``prompt``, images.edit a ``prompt`` and an ``image`` part
    (https://platform.openai.com/docs/api-reference/images).
    """
    body = seen.json if isinstance(seen.json, dict) else {}
    if route == "chat":
        messages = body.get("messages")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "you must provide a model parameter"
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and "role" in m for m in messages):
            return "'messages' must be a non-empty list of messages with a role"
    elif route == "gemini":
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents or not all(
                isinstance(c, dict) and isinstance(c.get("parts"), list) and c["parts"]
                for c in contents):
            return "* GenerateContentRequest.contents: contents is not specified"
    elif route == "images.generate":
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return "Missing required parameter: 'prompt'."
    elif route == "images.edit":
        if "prompt" not in seen.form:
            return "Missing required parameter: 'prompt'."
        if not any(name in seen.form for name in ("image", "image[]")):
            return "Missing required parameter: 'image'."
    return None


class FakeUpstream:
    """The aiohttp app, its scripted queues and what it saw.

    Like the real services it refuses a request without a key (401 for the OpenAI-style
    routes, 403 PERMISSION_DENIED for Google's) or with a key other than ``key`` when one is
    set, and a request whose basic shape is wrong (400, see :func:`shape_problem`); refused
    requests are recorded in ``refused`` and do not consume a scripted reply.
    """

    def __init__(self, key: str | None = None) -> None:
        self.key = key
        self.refused: list[tuple[str, str]] = []
        self.requests: list[Seen] = []
        self.last = Seen(route="", path="", headers={})
        self.files: dict[str, Reply] = {}
        self._queues: dict[str, deque[Reply]] = defaultdict(deque)
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    def push(self, route: str, *replies: Reply) -> None:
        """Queue answers for ``route`` (one of ROUTES except ``files``)."""
        assert route in ROUTES, route
        self._queues[route].extend(replies)

    def serve(self, name: str, data: bytes | Reply, content_type: str = "image/png") -> str:
        """Serve ``data`` at ``/files/NAME``; returns its URL."""
        self.files[name] = data if isinstance(data, Reply) else Reply(
            body=data, content_type=content_type)
        return f"{self.url}/files/{name}"

    def seen(self, route: str) -> list[Seen]:
        """Requests recorded on ``route``."""
        return [r for r in self.requests if r.route == route]

    @property
    def v1(self) -> str:
        """Base URL for the OpenAI-style routes."""
        return f"{self.url}/v1"

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1beta/models/{action}", self._gemini)
        app.router.add_post("/v1/images/generations", self._images_generate)
        app.router.add_post("/v1/images/edits", self._images_edit)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1beta/models", self._gemini_models)
        app.router.add_get("/files/{name}", self._file)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Release slow handlers and shut down."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, route: str, request: web.Request) -> None:
        seen = Seen(route=route, path=request.path_qs, headers=dict(request.headers))
        if request.method == "GET":
            pass
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader):
                    data = await part.read()
                    seen.form.setdefault(part.name or "", []).append(
                        (part.filename, part.headers.get("Content-Type"), bytes(data)))
        else:
            raw = await request.read()
            seen.json = json.loads(raw) if raw else None
        self.last = seen  # subclasses may not keep ``requests``; the refusal check reads this
        self.requests.append(seen)

    async def _answer(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        if reply.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), reply.delay)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if reply.body is not None:
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
        else:
            body = json.dumps(reply.json).encode()
        headers = {"Content-Type": reply.content_type, **reply.headers}
        if reply.trickle:
            resp = web.StreamResponse(status=reply.status,
                                      headers={**headers, "Content-Length": str(len(body))})
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), reply.trickle)
            await resp.write(body[len(body) // 2:])
            return resp
        if reply.truncate_at is None:
            return web.Response(status=reply.status, body=body, headers=headers)
        resp = web.StreamResponse(status=reply.status,
                                  headers={**headers, "Content-Length": str(len(body))})
        await resp.prepare(request)
        await resp.write(body[: reply.truncate_at])
        assert request.transport is not None
        request.transport.close()
        return resp

    def _refusal(self, route: str, request: web.Request, seen: Seen) -> Reply | None:
        """The error the real service answers for a missing or wrong key or a bad shape."""
        google = route.startswith("gemini")
        key = _google_key(request, request.headers) if google else _openai_key(request.headers)
        if not key or (self.key is not None and key != self.key):
            self.refused.append((route, "key"))
            if google:
                return google_error(403 if not key else 400,
                                    "PERMISSION_DENIED" if not key else "INVALID_ARGUMENT",
                                    "Method doesn't allow unregistered callers" if not key
                                    else "API key not valid. Please pass a valid API key.")
            return openai_error(401, "Incorrect API key provided.", code="invalid_api_key")
        problem = shape_problem(route, seen)
        if problem is None:
            return None
        self.refused.append((route, problem))
        if google:
            return google_error(400, "INVALID_ARGUMENT", problem)
        return openai_error(400, problem)

    async def _scripted(self, route: str, request: web.Request, default: Reply) -> web.StreamResponse:
        await self._record(route, request)
        if (refused := self._refusal(route, request, self.last)) is not None:
            return await self._answer(request, refused)
        queue = self._queues[route]
        return await self._answer(request, queue.popleft() if queue else default)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        default = Reply(json=chat_body("", images=[
            {"type": "image_url", "image_url": {"url": data_url(png())}}]))
        return await self._scripted("chat", request, default)

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        action = request.match_info["action"]
        if not action.endswith(":generateContent"):
            raise web.HTTPNotFound()
        model = action.removesuffix(":generateContent")
        if model in SHUT_DOWN:
            # What Google answers for an id it has shut down
            # (https://ai.google.dev/gemini-api/docs/troubleshooting: 404 NOT_FOUND).
            await self._record("gemini", request)
            if (refused := self._refusal("gemini", request, self.last)) is not None:
                return await self._answer(request, refused)
            return await self._answer(request, google_error(
                404, "NOT_FOUND", f"models/{model} is not found for API version v1beta, or is "
                "not supported for generateContent. Call ListModels to see the list of "
                "available models and their supported methods."))
        default = Reply(json=gemini_body([{"inlineData": {"mimeType": "image/png",
                                                          "data": b64(png())}}]))
        if await _text_only(request):
            # Text mode (/describe): the answer is text parts only, as for any text model
            # (https://ai.google.dev/api/generate-content#generationconfig).
            default = Reply(json=gemini_body([{"text": DESCRIBED}]))
        return await self._scripted("gemini", request, default)

    async def _images_generate(self, request: web.Request) -> web.StreamResponse:
        default = Reply(json=images_body({"b64_json": b64(png())}))
        return await self._scripted("images.generate", request, default)

    async def _images_edit(self, request: web.Request) -> web.StreamResponse:
        default = Reply(json=images_body({"b64_json": b64(png())}))
        return await self._scripted("images.edit", request, default)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        default = Reply(json={"object": "list", "data": [
            {"id": "gpt-image-1", "object": "model", "created": 1, "owned_by": "openai"}]})
        return await self._scripted("models", request, default)

    async def _gemini_models(self, request: web.Request) -> web.StreamResponse:
        default = Reply(json={"models": [{"name": f"models/{m}"} for m in TODAY]})
        return await self._scripted("gemini.models", request, default)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Seen(route="files", path=request.path_qs,
                                  headers=dict(request.headers)))
        reply = self.files.get(request.match_info["name"])
        if reply is None:
            raise web.HTTPNotFound()
        return await self._answer(request, reply)


@pytest.fixture(name="fake_upstream")
async def fake_upstream_fixture() -> AsyncIterator[FakeUpstream]:
    """A started :class:`FakeUpstream` on loopback, stopped after the test."""
    fake = FakeUpstream()
    await fake.start()
    yield fake
    await fake.stop()


async def slow_link_order(generate: Callable[[str], Awaitable[object]], fake: FakeUpstream,
                          route: str, reply: Reply, slots: int) -> list[str]:
    """``slots`` answers trickling in on a slow link (``reply``), then one more: the order done.

    The last one finishes first when a read still waiting on the network holds no parse slot.
    """
    done: list[str] = []
    fake.push(route, *(replace(reply, trickle=1.0) for _ in range(slots)))

    async def call(name: str) -> None:
        await generate(name)
        done.append(name)

    slow = [asyncio.create_task(call("slow")) for _ in range(slots)]
    async with asyncio.timeout(5):
        while len(fake.seen(route)) < slots:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # their heads are in: each holds (or has lent) a slot
    await call("fast")
    await asyncio.gather(*slow)
    return done
