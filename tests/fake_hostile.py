"""Hostile upstream scenarios (issue 12, items 7-8) on top of :mod:`tests.fake_upstream`.

Oversize, padded and compressed answers; a raw server that floods chunked bytes; a listener that
records every connection (to prove a refused image URL was never even connected to); a throwaway
TLS CA; providers of every wire pointed at the fake; and a process-wide tripwire that records
every TCP connect while armed and stops any outside 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from PIL import Image

from bot.providers.base import ImageProvider, ProviderRequest
from bot.providers.gemini import GeminiProvider
from bot.providers.openai_chat import OpenAIChatProvider
from bot.providers.openai_images import OpenAIImagesProvider
from bot.providers.retry import RetryPolicy
from tests.fake_upstream import (
    FakeUpstream,
    Reply,
    Sleeps,
    chat_body,
    gemini_body,
    images_body,
    png,
)


def gif(width: int = 8, height: int = 8, color: str = "green") -> bytes:
    """A small real GIF."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "GIF")
    return buf.getvalue()


def webp(width: int = 8, height: int = 8, color: str = "yellow") -> bytes:
    """A small real WebP."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "WEBP")
    return buf.getvalue()


def noisy_png(width: int, height: int) -> bytes:
    """A PNG of random pixels: it does not compress, so its size is about width * height * 3."""
    import os

    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buf, "PNG")
    return buf.getvalue()


def gzipped(reply_json: Any, **reply: Any) -> Reply:
    """A JSON reply sent with ``Content-Encoding: gzip``."""
    import gzip

    headers = {"Content-Encoding": "gzip", **reply.pop("headers", {})}
    return Reply(body=gzip.compress(json.dumps(reply_json).encode(), 1), headers=headers, **reply)


class ConnectionRecorder:
    """A raw TCP listener that counts connections and answers each with one small PNG over HTTP."""

    def __init__(self, host: str = "127.0.0.2", tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.tls = tls
        self.port = 0
        self.connections = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> ConnectionRecorder:
        """Listen on ``host`` (an address on 127.0.0.0/8) on a free port."""
        self._server = await asyncio.start_server(self._handle, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "/x.png", host: str | None = None) -> str:
        """A URL on this listener (``host`` overrides the address, e.g. a name)."""
        return f"{'https' if self.tls else 'http'}://{host or self.host}:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            body = png(color="purple")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            writer.close()

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def tls_pair(directory: str, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts: a throwaway CA and a certificate for ``name`` only."""
    import subprocess

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=imagine-bot test CA")
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", f"/CN={name}")
    with open(f"{directory}/san.ext", "w") as ext:
        ext.write(f"subjectAltName=DNS:{name}\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "san.ext")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(f"{directory}/srv.pem", f"{directory}/srv.key")
    return server, ssl.create_default_context(cafile=f"{directory}/ca.pem")


@pytest.fixture(name="recorder")
async def recorder_fixture() -> AsyncIterator[ConnectionRecorder]:
    """A started :class:`ConnectionRecorder` on 127.0.0.2."""
    recorder = await ConnectionRecorder().start()
    yield recorder
    await recorder.stop()


class ChunkedFlood:
    """A raw HTTP server answering anything with ``total`` chunked bytes; ``sent`` counts them."""

    def __init__(self, total: int, host: str = "127.0.0.1", chunk: int = 64 * 1024) -> None:
        self.total = total
        self.host = host
        self.chunk = chunk
        self.port = 0
        self.sent = 0
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> ChunkedFlood:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{self.host}:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            for line in head.split("\r\n"):
                if line.startswith("content-length:"):
                    await reader.readexactly(int(line.split(":")[1]))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            piece = b"A" * self.chunk
            written = 0
            while written < self.total:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                written += len(piece)
                self.sent = written
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


KEY = "sk-test-limits-0123456789"
MIB = 1024 * 1024
REQUEST = ProviderRequest(model_id="m", prompt="a cat", timeout=20.0)
Build = Callable[..., ImageProvider]


@pytest.fixture(name="make")
async def make_fixture(fake_upstream: FakeUpstream, sleeps: Sleeps) -> AsyncIterator[Build]:
    """``make(wire, base_url=..., max_response_mb=...)``: providers closed after the test."""
    made: list[ImageProvider] = []

    def build(wire: str, base_url: str | None = None, max_response_mb: int = 1) -> ImageProvider:
        policy = RetryPolicy(max_retries=3, sleep=sleeps, jitter=lambda: 0.5)
        common: dict[str, Any] = {"name": wire, "api_key": KEY, "policy": policy,
                                  "max_response_mb": max_response_mb}
        provider: ImageProvider
        if wire == "gemini":
            provider = GeminiProvider(base_url=base_url or fake_upstream.url, **common)
        elif wire == "chat":
            provider = OpenAIChatProvider(base_url=base_url or fake_upstream.v1, **common)
        else:
            provider = OpenAIImagesProvider(base_url=base_url or fake_upstream.v1, **common)
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


def answer(wire: str, payload: str) -> dict[str, Any]:
    """An answer carrying ``payload`` as base64 image data in ``wire``'s shape."""
    if wire == "gemini":
        return gemini_body([{"inlineData": {"mimeType": "image/png", "data": payload}}])
    if wire == "chat":
        return chat_body("", images=[{"image_url": {"url": f"data:image/png;base64,{payload}"}}])
    return images_body({"b64_json": payload})


ROUTE = {"gemini": "gemini", "chat": "chat", "images": "images.generate"}
WIRES = tuple(ROUTE)
_CONNECTS: list[list[Any]] = []  # the armed recorders of every socket connect in this process


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Record each TCP connect while armed; stop any outside 127.0.0.0/8 before it leaves."""
    if event != "socket.connect" or not _CONNECTS or not isinstance(args[1], tuple):
        return
    host = str(args[1][0])
    _CONNECTS[-1].append(host)
    if not host.startswith("127."):  # even if the guard broke, tests never reach a real network
        raise ConnectionRefusedError(f"test tripwire: connect to {host}")


sys.addaudithook(_audit)


@pytest.fixture(name="connects")
def connects_fixture() -> Iterator[list[Any]]:
    """Every address this process connects to during the test."""
    seen: list[Any] = []
    _CONNECTS.append(seen)
    yield seen
    _CONNECTS.remove(seen)


def url_answer(wire: str, url: str) -> dict[str, Any]:
    """An answer pointing at the image ``url`` in ``wire``'s shape."""
    if wire == "gemini":
        return gemini_body([{"text": f"Here it is: ![result]({url})"}])
    if wire == "chat":
        return chat_body(f"![result]({url})")
    return images_body({"url": url})
