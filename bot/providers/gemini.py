"""``gemini``: the native ``POST {base_url}/v1beta/models/{id}:generateContent`` API.

Request format (https://ai.google.dev/api/generate-content and
https://ai.google.dev/gemini-api/docs/image-generation): ``contents[]`` of ``user`` / ``model``
turns, the text part first, then references as ``inline_data {mime_type, data}`` parts;
``generationConfig.responseModalities = ["TEXT", "IMAGE"]`` and ``imageConfig {aspectRatio,
imageSize}`` (no ``imageSize`` when the model takes none, e.g. gemini-2.5-flash-image).

Multi-turn edits send the model's previous parts back exactly as received, ``thoughtSignature``
included (https://ai.google.dev/gemini-api/docs/thought-signatures). Gemini 3 models answer 400 to
a replayed model turn whose parts lack a signature; when a turn has none (it came from another
route, the demo, or a relay that strips them) its parts carry Google's documented placeholder
``skip_thought_signature_validator`` (the same page, "FAQ: history from other models").
Signatures are kept as JSON in ``ProviderResult.provider_state``:
``{"parts": [...], "outputs": {"<part index>": <output index>}}``, where each answer image's
base64 is left out (it is the turn's output image, stored once in the blob store) and put back
from ``HistoryTurn.outputs`` when the turn is replayed. A turn without state (another provider,
the demo) is replayed as ``inline_data`` parts, signed with the placeholder.

Auth: ``x-goog-api-key`` for Google's hosts (``*.googleapis.com``), ``Authorization: Bearer``
for relays' native routes; ``[providers.NAME] auth`` overrides the guess.

Why plain httpx rather than the google-genai SDK: the wire is a single JSON POST; httpx is
already a dependency; we need byte-exact control over the parts we replay (signatures, unknown
fields), over ``base_url`` and the auth header for relays, and over retries (ours, not the
SDK's); and the loopback tests can drive exactly what production sends.
"""

from __future__ import annotations

import copy
import json
import logging
import urllib.parse
from dataclasses import replace
from typing import Any, Literal

import httpx

from bot.budget import expecting
from bot.domain import ImageData
from bot.offload import parsing, quick, run_sync
from bot.providers.base import HistoryTurn, ProviderRequest, ProviderResult
from bot.providers.extract import extract, native_output_indexes
from bot.providers.retry import RetryPolicy, TransientError
from bot.providers.text import TextRequest, gemini_text, gemini_text_body
from bot.providers.wire.b64 import INLINE_LIMIT, encode_base64
from bot.providers.wire.clients import UNPOOLED, cap_bytes, capped_client
from bot.providers.wire.fetch import UrlFetcher
from bot.providers.wire.http_errors import read_json, wire_failures
from bot.safety import gemini_safety

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
#: https://ai.google.dev/gemini-api/docs/thought-signatures (FAQ): replayed history that has no
#: signature of its own may carry this value instead.
DUMMY_SIGNATURE = "skip_thought_signature_validator"
AuthMode = Literal["auto", "bearer", "x-goog-api-key"]


def auth_headers(base_url: str, api_key: str, auth: AuthMode = "auto") -> dict[str, str]:
    """The auth header for ``base_url``: Google's hosts take ``x-goog-api-key``, relays Bearer."""
    if auth == "auto":
        host = (urllib.parse.urlsplit(base_url).hostname or "").lower()
        auth = "x-goog-api-key" if host.endswith("googleapis.com") else "bearer"
    if auth == "x-goog-api-key":
        return {"x-goog-api-key": api_key}
    return {"Authorization": f"Bearer {api_key}"}


class GeminiProvider:
    """Generates and edits images with Gemini's native ``generateContent``."""

    def __init__(self, *, name: str, api_key: str, base_url: str | None = None,
                 key_env: str | None = None, auth: AuthMode = "auto",
                 policy: RetryPolicy | None = None, fetcher: UrlFetcher | None = None,
                 max_response_mb: int | None = None) -> None:
        self.name = name
        self._key = api_key
        self._key_env = key_env
        self._base = (base_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1beta")
        self._headers = {**auth_headers(self._base, api_key, auth),
                         "Content-Type": "application/json"}
        self._policy = policy or RetryPolicy()
        self._fetcher = fetcher or UrlFetcher(allow=(self._base,),
                                              max_total=cap_bytes(max_response_mb))
        # The job scheduler bounds concurrent calls ([limits] global_concurrency); httpx's own
        # default pool of 100 would make the rest wait unseen, their wait counted as the model's.
        # Answers are capped while they stream ([providers.NAME] max_response_mb).
        self._client = capped_client(cap_bytes(max_response_mb), limits=UNPOOLED)
        #: Google fetches ``file_data`` URLs itself (bot/links.py); a relay's native route may not.
        self.accepts_links = (urllib.parse.urlsplit(self._base).hostname or "").endswith(
            ".googleapis.com")

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        """POST one generateContent (retrying transient failures) and extract its image."""
        body = await build_body(request)
        model = request.model_id.removeprefix("models/")
        url = f"{self._base}/v1beta/models/{model}:generateContent"

        async def attempt() -> ProviderResult:
            return await self._attempt(url, body, request.timeout)

        with expecting(request.size):  # an answer's weight when it declares no length
            return await self._policy.run(attempt, job_seconds=request.timeout,
                                          what=f"{self.name} {request.model_id}",
                                          model=request.model_id)

    async def _attempt(self, url: str, body: bytes, seconds: float) -> ProviderResult:
        # Sent streamed: the body is read under a parse slot (in arrival order, bot/offload.py);
        # the client's hooks have capped it and leased its bytes by the time send() returns.
        with wire_failures(seconds):
            resp = await self._client.send(self._client.build_request(
                "POST", url, content=body, headers=self._headers,
                timeout=httpx.Timeout(seconds, connect=min(seconds, 15.0))), stream=True)
        try:
            async with parsing():
                with wire_failures(seconds):
                    await quick(resp.aread())
                data = await read_json(resp.status_code, resp.content, resp.headers,
                                       key_env=self._key_env, secret=self._key)
                result = await extract(data, fetch=self._fetcher)
        finally:
            await resp.aclose()  # read or not (a cancel while waiting for the slot)
        return replace(result, provider_state=compact_state(data))

    async def text(self, request: TextRequest) -> str:
        """Text mode (/describe): generateContent answering TEXT only (bot/providers/text.py)."""
        body = await gemini_text_body(request)
        url = f"{self._base}/v1beta/models/{request.model_id.removeprefix('models/')}:generateContent"

        async def attempt() -> str:
            with wire_failures(request.timeout):
                resp = await self._client.post(url, content=body, headers=self._headers,
                                               timeout=httpx.Timeout(request.timeout, connect=15.0))
            return gemini_text(await read_json(resp.status_code, resp.content, resp.headers,
                                               key_env=self._key_env, secret=self._key))

        return await self._policy.run(attempt, job_seconds=request.timeout,
                                      what=f"{self.name} {request.model_id}",
                                      model=request.model_id)

    async def probe(self) -> str:
        """One cheap call (``GET /v1beta/models``) to check the endpoint and the key."""
        return f"ok ({len(await self.list_models())} models listed)"

    async def list_models(self) -> list[str]:
        """Model ids this key can call (``GET /v1beta/models``, paged, at most 10 pages).

        https://ai.google.dev/api/models#method:-models.list: ``models[].name`` is
        ``models/<id>``; ``nextPageToken`` continues the list.
        """
        ids: list[str] = []
        token = ""
        for _ in range(10):
            params: dict[str, str | int] = {"pageSize": 1000}
            if token:
                params["pageToken"] = token

            async def call(params: dict[str, str | int] = params) -> dict[str, Any]:
                try:
                    resp = await self._client.get(f"{self._base}/v1beta/models", params=params,
                                                  headers=self._headers, timeout=20.0)
                except httpx.TransportError as exc:  # timeouts included
                    raise TransientError(f"probe failed ({type(exc).__name__})") from None
                return await read_json(resp.status_code, resp.content, resp.headers,
                                       key_env=self._key_env, secret=self._key)

            body = await RetryPolicy(max_retries=0).run(call, job_seconds=20.0, what="probe")
            models = body.get("models")
            ids += [str(m.get("name", "")).removeprefix("models/")
                    for m in (models if isinstance(models, list) else []) if isinstance(m, dict)]
            token = str(body.get("nextPageToken") or "")
            if not token:
                break
        return ids

    async def aclose(self) -> None:
        """Close the HTTP client and the image downloader."""
        await self._client.aclose()
        await self._fetcher.aclose()


async def build_body(request: ProviderRequest) -> bytes:
    """The generateContent JSON body (serialised in a thread when it carries big images)."""
    contents: list[dict[str, Any]] = []
    for turn in request.history:
        contents.append({"role": "user", "parts": await _user_parts(turn.prompt, turn.inputs)})
        contents.append({"role": "model", "parts": await model_parts(turn)})
    contents.append({"role": "user",
                     "parts": [*await _user_parts(request.prompt, request.references),
                               *link_parts(request)]})
    image_config: dict[str, str] = {}
    if request.aspect:
        image_config["aspectRatio"] = request.aspect
    if request.size and request.send_size:
        image_config["imageSize"] = request.size
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    if image_config:
        config["imageConfig"] = image_config
    if request.thinking:
        config["thinkingConfig"] = {"thinkingLevel": request.thinking}
    body: dict[str, Any] = {"contents": contents, "generationConfig": config}
    if request.search:
        body["tools"] = [{"google_search": {}}]
    if safety := gemini_safety(request.safety):
        body["safetySettings"] = safety
    weight = sum(i.size_bytes for t in request.history for i in (*t.inputs, *t.outputs))
    weight += sum(i.size_bytes for i in request.references)
    if weight > INLINE_LIMIT:
        return await run_sync(lambda: json.dumps(body).encode())
    return json.dumps(body).encode()


async def _user_parts(prompt: str, images: tuple[ImageData, ...]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": prompt}]
    for image in images:
        parts.append({"inline_data": {"mime_type": image.mime,
                                      "data": await encode_base64(image.data)}})
    return parts


def link_parts(request: ProviderRequest) -> list[dict[str, Any]]:
    """References by URL as ``file_data {mime_type, file_uri}`` parts (Google fetches them).

    https://ai.google.dev/gemini-api/docs/file-input-methods: public and signed https URLs.
    """
    return [{"file_data": {"mime_type": link.mime, "file_uri": link.url}}
            for link in request.links]


def compact_state(body: dict[str, Any]) -> str | None:
    """The model's parts as JSON, minus the answer image's base64 (it is the stored output)."""
    candidates = body.get("candidates") or []
    first = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
    content = first.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        return None
    parts = copy.copy(parts)
    outputs: dict[str, int] = {}
    for out, index in enumerate(native_output_indexes(parts)):
        part = dict(parts[index])
        key = "inlineData" if "inlineData" in part else "inline_data"
        part[key] = {**part[key], "data": ""}
        parts[index] = part
        outputs[str(index)] = out
    return json.dumps({"parts": parts, "outputs": outputs})


async def model_parts(turn: HistoryTurn) -> list[dict[str, Any]]:
    """A model turn to replay: its stored parts with output images put back, or plain images."""
    try:
        state = json.loads(turn.provider_state) if turn.provider_state else None
    except ValueError:
        state = None
    if isinstance(state, dict) and isinstance(state.get("parts"), list):
        parts: list[Any] = list(state["parts"])
        outputs = state.get("outputs")
        outputs = outputs if isinstance(outputs, dict) else {}
        drop: set[int] = set()
        for raw_index, out in outputs.items():
            index = int(raw_index)
            if not isinstance(out, int) or out >= len(turn.outputs) or index >= len(parts):
                drop.add(index)
                continue
            part = dict(parts[index])
            key = "inlineData" if "inlineData" in part else "inline_data"
            part[key] = {**part[key], "data": await encode_base64(turn.outputs[out].data)}
            parts[index] = part
        kept = [p for i, p in enumerate(parts) if i not in drop]
        if kept:
            return signed(kept)
    parts = [{"inline_data": {"mime_type": o.mime, "data": await encode_base64(o.data)}}
             for o in turn.outputs]
    return signed(parts or [{"text": "(no image)"}])


def signed(parts: list[Any]) -> list[Any]:
    """Parts of a model turn to replay, each non-thought part signed (real or placeholder).

    A turn whose parts carry signatures is replayed exactly as Google sent it. A turn with none
    (another route, the demo, a relay that strips them) gets the documented placeholder on every
    part, so Gemini 3 models never see a bare model-role image or text part.
    """
    if any(isinstance(p, dict) and ("thoughtSignature" in p or "thought_signature" in p)
           for p in parts):
        return parts
    return [{**p, "thoughtSignature": DUMMY_SIGNATURE} if isinstance(p, dict) and not p.get("thought")
            else p for p in parts]
