"""The e2e benchmark's fakes: the upstream with real PNG answers, platforms that keep nothing."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import io
import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fake_discord import Event, FakeDiscord, FakeInteraction
from tests.fake_telegram import Call, FakeTelegram
from tests.fake_upstream import FakeUpstream, Reply

TG_TOKEN = "7000000001:bench-token"
DC_TOKEN = "bench-discord-token"
#: The fake upstream writes answers in pieces this large, waiting while the bot has not read.
CHUNK = 256 * 1024
#: Each prompt carries its job's marker, so the upstream can say when that job's image was ready.
MARKER = re.compile(rb"job\d+x\d+")


# ----- images and the upstream ------------------------------------------------------------------

def image_1k() -> bytes:
    """1024x1024 PNG of about 1.5 MB (a gradient with a noisy band), like a real 1K result."""
    image = Image.linear_gradient("L").resize((1024, 1024)).convert("RGB")
    band = Image.frombytes("RGB", (1024, 400), random.Random(1).randbytes(1024 * 400 * 3))
    image.paste(band, (0, 300))
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def image_4k() -> bytes:
    """5504x3072 PNG of about 20 MB (noise does not compress), like a real 4K result."""
    width, height, noisy = 5504, 3072, 1240
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    band = Image.frombytes("RGB", (width, noisy), random.Random(4).randbytes(width * noisy * 3))
    image.paste(band, (0, 900))
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def gemini_answer(png: bytes) -> bytes:
    """A generateContent body carrying ``png``, serialised once."""
    return json.dumps({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "Here you go."},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}}]},
        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 1290}}).encode()


class BenchUpstream(FakeUpstream):
    """Every generateContent answers after ``delay`` s with the image the prompt's size asks for."""

    def __init__(self, delay: float, bodies: dict[str, bytes]) -> None:
        super().__init__()
        self.delay = delay
        self.bodies = bodies
        self.calls = 0
        #: When each job's image was ready (its answer written out), by the job's marker.
        self.ready: dict[str, float] = {}

    async def _scripted(self, route: str, request: web.Request,
                        default: Reply) -> web.StreamResponse:
        raw = await request.read()
        self.calls += 1
        size = json.loads(raw).get("generationConfig", {}).get("imageConfig", {}).get(
            "imageSize", "1K")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.delay)
        # Streamed with back-pressure: a whole web.Response is copied into the transport's
        # buffer when the bot reads slowly (500 unread 4K answers held 11 GB in this process).
        body = self.bodies[size]
        resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Content-Length": str(len(body))})
        await resp.prepare(request)
        view = memoryview(body)
        for at in range(0, len(body), CHUNK):
            await resp.write(view[at:at + CHUNK])
        await resp.write_eof()
        marker = MARKER.search(raw)
        if marker is not None:
            self.ready[marker.group().decode()] = time.monotonic()
        return resp


# ----- the platforms, stripped of their memory ----------------------------------------------------

@dataclass
class Job:
    """One /imagine as the user experiences it."""

    sent: float
    want_document: bool = False
    marker: str = ""
    #: When the upstream had written the job's image out (its answer complete).
    ready: float | None = None
    fetched: float | None = None
    feedback: float | None = None
    photo: float | None = None
    document: float | None = None
    error: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def finished(self) -> float:
        """When the whole result was in the chat."""
        return (self.document if self.want_document else self.photo) or 0.0


class BenchTelegram(FakeTelegram):
    """The Bot API fake, keeping no files or call history, reporting to the current jobs."""

    def __init__(self) -> None:
        super().__init__(token=TG_TOKEN)
        self.current: dict[int, Job] = {}
        self.methods: collections.Counter[str] = collections.Counter()

    def _register_file(self, data: bytes, folder: str, ext: str) -> str:
        return super()._register_file(b"", folder, ext)

    def _record(self, call: Call) -> None:
        self.methods[call.method] += 1
        if call.method == "getUpdates" and call.ok:
            for update in call.result:
                chat = (update.get("message") or {}).get("chat", {}).get("id")
                fetched = self.current.get(chat)
                if fetched is not None and fetched.fetched is None:
                    fetched.fetched = call.at
        job = self.current.get(call.chat_id or 0)
        if job is not None and call.ok:
            # The first sign of life: the draft ("Thinking...") in a private chat, else the
            # chat action or the status message.
            status = call.method == "sendMessage" and call.text.startswith(("🎨", "⏳"))
            if job.feedback is None and (
                    status or call.method in ("sendMessageDraft", "sendChatAction")):
                job.feedback = call.at
            elif call.method == "sendPhoto":
                job.photo = call.at
            elif call.method == "sendDocument":
                job.document = call.at
            elif call.method == "sendMessage" and not call.text.startswith(("🎨", "⏳")):
                job.error = call.text
            if job.error or job.finished:
                job.done.set()
        self._changed.set()

    def trim(self) -> None:
        """Forget delivered messages and confirmed updates (the fake would keep them all)."""
        self.messages.clear()
        self._updates = [u for u in self._updates if u["update_id"] > self._confirmed]


class BenchDiscord(FakeDiscord):
    """The Discord fake, reporting to the current jobs and dropping what it has shown."""

    def __init__(self) -> None:
        super().__init__(token=DC_TOKEN)
        self.current: dict[int, Job] = {}
        #: What the bot did, by kind (ack, message, edit, delete, rate_limited, ...).
        self.kinds: collections.Counter[str] = collections.Counter()

    async def record(self, kind: str, *, message: Any = None,
                     interaction: FakeInteraction | None = None, **data: Any) -> Event:
        if not (kind == "message" and getattr(message, "via", "") == "response"):
            self.kinds[kind] += 1  # (the ack's own message is the ack's call, counted once)
        job = self.current.get(interaction.id) if interaction is not None else None
        if job is not None:
            now = time.monotonic()
            if kind == "ack" and job.feedback is None:
                job.feedback = now
            elif kind in ("message", "edit") and message is not None and message.attachments:
                job.photo = now
                for attachment in message.attachments:
                    self.files.pop(attachment.id, None)
                    attachment.data = b""
                job.done.set()
        return Event(0, kind, message, interaction, data)
