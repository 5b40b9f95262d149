"""The aiohttp transport under httpx (upstreams, and python-telegram-bot's Bot API calls): bytes,
keep-alive, the pool and timeouts, and failures as httpx exceptions."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import socket
import weakref
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from aiohttp import web
from multidict import CIMultiDict
from telegram.error import TimedOut
from telegram.request import HTTPXRequest

from adapters.cli.runner import build_adapters
from adapters.telegram import TelegramAdapter
from adapters.telegram.app import POOL_SIZE, bot_api_request
from bot.bootstrap import build_core
from bot.budget import DeliveryBudget, Lease, reading
from bot.config import Settings
from bot.providers.wire.aio_transport import AiohttpTransport
from bot.providers.wire.clients import capped_client

BODY = bytes(range(256)) * 8192  # 2 MiB


class Server:
    """A loopback aiohttp server that counts the connections its requests came on."""

    def __init__(self) -> None:
        self.peers: set[tuple[str, int]] = set()
        self.seen_headers: list[CIMultiDict[str]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""
        #: Set when the test is over: a stalled answer then ends (cleanup waits for handlers).
        self.done = asyncio.Event()

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/big", self.big)
        app.router.add_post("/sendPhoto", self.photo)
        app.router.add_get("/stall", self.stall)
        app.router.add_get("/cut", self.cut)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def _note(self, request: web.Request) -> None:
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))
        self.seen_headers.append(CIMultiDict(request.headers))

    async def big(self, request: web.Request) -> web.Response:
        self._note(request)
        assert await request.read() == b"ping" * 1000
        await asyncio.sleep(0.05)
        return web.Response(body=BODY, content_type="application/octet-stream")

    async def photo(self, request: web.Request) -> web.Response:
        self._note(request)
        fields = {part.name: await part.read() async for part in await request.multipart()}
        assert fields["photo"] == BODY
        return web.json_response({"ok": True, "result": True})

    async def stall(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        resp = web.StreamResponse(headers={"Content-Length": "100"})
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        await self.done.wait()
        return resp

    async def cut(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        resp = web.StreamResponse(headers={"Content-Length": "100000"})
        await resp.prepare(request)
        await resp.write(b"x" * 1000)
        assert request.transport is not None
        request.transport.close()
        return resp


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """A started :class:`Server`."""
    started = Server()
    await started.start()
    yield started
    started.done.set()
    assert started.runner is not None
    await started.runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A capped upstream client, as the providers build them (aiohttp underneath)."""
    made = capped_client(64 * 1024 * 1024, lease=False)
    assert isinstance(made._transport, AiohttpTransport)
    yield made
    await made.aclose()


async def test_sequential_calls_reuse_one_kept_alive_connection(
        server: Server, client: httpx.AsyncClient) -> None:
    for _ in range(5):
        resp = await client.post(f"{server.url}/big", content=b"ping" * 1000,
                                 headers={"X-Test": "1"})
        assert resp.status_code == 200 and resp.content == BODY
        assert resp.headers["content-type"] == "application/octet-stream"
    assert len(server.peers) == 1
    assert server.seen_headers[0]["X-Test"] == "1"
    assert server.seen_headers[0]["Accept-Encoding"] == "gzip, deflate"


async def test_concurrent_calls_each_get_a_connection_then_reuse_them(
        server: Server, client: httpx.AsyncClient) -> None:
    async def call() -> bytes:
        return (await client.post(f"{server.url}/big", content=b"ping" * 1000)).content

    assert all(body == BODY for body in await asyncio.gather(*(call() for _ in range(20))))
    first = set(server.peers)
    assert len(first) == 20  # none waited for another: the scheduler bounds calls, not the pool
    await asyncio.gather(*(call() for _ in range(20)))
    assert server.peers == first  # the second round came on the kept-alive connections


async def test_a_stalled_answer_is_a_read_timeout(server: Server,
                                                  client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await client.get(f"{server.url}/stall", timeout=httpx.Timeout(5.0, read=0.2))


async def test_a_cut_answer_is_a_transport_error(server: Server,
                                                 client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.TransportError):
        await client.get(f"{server.url}/cut")


async def test_nothing_listening_is_a_connect_error(client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        await client.get(f"http://127.0.0.1:{port}/", timeout=2.0)


async def test_a_body_left_unread_closes_its_connection(server: Server,
                                                        client: httpx.AsyncClient) -> None:
    async with client.stream("POST", f"{server.url}/big", content=b"ping" * 1000) as resp:
        assert resp.status_code == 200  # closed without reading: not reusable
    resp2 = await client.post(f"{server.url}/big", content=b"ping" * 1000)
    assert resp2.content == BODY and len(server.peers) == 2


@pytest.mark.parametrize("leased", [False, True], ids=["capped", "capped-and-leased"])
async def test_an_answer_is_freed_with_its_last_reference_not_by_the_cyclic_gc(
        server: Server, leased: bool) -> None:
    client = capped_client(64 * 1024 * 1024, lease=leased)
    budget, claim = DeliveryBudget(100 * 1024 * 1024), Holding()
    gc.disable()  # what a busy bot looks like: full collections are rare
    try:
        with reading(budget, claim):
            resp = await client.post(f"{server.url}/big", content=b"ping" * 1000)
        assert resp.content == BODY
        gone = weakref.ref(resp)
        del resp
        assert gone() is None  # a cycle (httpx's stream -> Response) would keep 2 MiB here
    finally:
        gc.enable()
        await client.aclose()
        if claim.lease is not None:
            claim.lease.release()


class Holding:
    """A lease holder, as a job's pending delivery is one."""

    lease: Lease | None = None


async def test_past_its_pool_wait_a_call_is_a_pool_timeout_and_is_never_sent(
        server: Server) -> None:
    client = httpx.AsyncClient(transport=AiohttpTransport(limit=1))
    try:
        async with client.stream("GET", f"{server.url}/stall") as held:  # the one connection
            assert held.status_code == 200
            with pytest.raises(httpx.PoolTimeout):
                await client.post(f"{server.url}/big", content=b"ping" * 1000,
                                  timeout=httpx.Timeout(5.0, pool=0.2))
            assert len(server.seen_headers) == 1  # the second call never reached the server
        with socket.socket() as sock:  # a failed call gives its connection back too
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/", timeout=httpx.Timeout(2.0, pool=0.2))
        resp = await client.post(f"{server.url}/big", content=b"ping" * 1000,
                                 timeout=httpx.Timeout(5.0, pool=0.2))
        assert resp.content == BODY
    finally:
        await client.aclose()


async def test_an_upload_nobody_reads_ends_within_the_sum_of_its_timeouts() -> None:
    """aiohttp has no write timeout: the four together bound the call instead."""
    held: list[asyncio.StreamWriter] = []

    async def never_read(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # open, never read: the upload fills the socket and stalls

    deaf = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = deaf.sockets[0].getsockname()[1]
    client = httpx.AsyncClient(transport=AiohttpTransport(limit=4))
    started = asyncio.get_running_loop().time()
    try:
        with pytest.raises(httpx.TimeoutException):
            await client.post(f"http://127.0.0.1:{port}/upload", content=b"x" * (64 << 20),
                              timeout=httpx.Timeout(0.5))
        assert asyncio.get_running_loop().time() - started < 5.0  # 2 s: 4 x 0.5
    finally:
        await client.aclose()
        for writer in held:
            writer.close()
        deaf.close()
        await deaf.wait_closed()


async def test_python_telegram_bot_over_it_says_a_pool_timeout_sent_nothing(
        server: Server) -> None:
    """PTB tells its pool timeout apart (the request was not sent) over this transport too."""
    request = HTTPXRequest(connection_pool_size=1,
                           httpx_kwargs={"transport": AiohttpTransport(limit=1)})
    await request.initialize()
    try:
        stalled = asyncio.create_task(request.do_request(f"{server.url}/stall", "GET",
                                                         read_timeout=10))
        async with asyncio.timeout(5):
            while not server.seen_headers:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        with pytest.raises(TimedOut, match="Pool timeout"):
            await request.do_request(f"{server.url}/stall", "GET", pool_timeout=0.2)
        assert len(server.seen_headers) == 1
        stalled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stalled
    finally:
        await request.shutdown()


async def test_a_sent_photo_is_freed_with_its_call_not_by_the_cyclic_gc(server: Server) -> None:
    """httpx's response and its bound stream are a cycle, and response.request led to the upload:
    each photo stayed until the next full collection (bench_e2e, 500 users: ~600 MB of them).
    A multipart upload as python-telegram-bot sends one: httpx ``files``, this transport."""
    client = httpx.AsyncClient(transport=AiohttpTransport(limit=POOL_SIZE))
    photo = Upload(BODY)
    gone = weakref.ref(photo)
    gc.disable()  # what a busy bot looks like: full collections are rare
    try:
        resp = await client.post(f"{server.url}/sendPhoto", data={"chat_id": "1"},
                                 files={"photo": ("photo.jpg", photo, "image/jpeg")})
        assert resp.json() == {"ok": True, "result": True}
        del resp, photo
        assert gone() is None
    finally:
        gc.enable()
        await client.aclose()


class Upload(io.BytesIO):
    """A file to upload that can be watched (a weak reference) for when it is freed."""


def test_the_composition_root_gives_the_bot_api_calls_this_transport(
        settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    """run.py wires it (the adapters may not import it): every Bot API call but getUpdates."""
    settings = settings_factory(telegram={"enabled": True, "token_env": "BENCH_TOKEN"})
    monkeypatch.setenv("BENCH_TOKEN", "123:abc")
    (adapter,) = build_adapters(build_core(settings), sync_commands=False)
    assert isinstance(adapter, TelegramAdapter) and adapter._transport is not None
    made = adapter._transport(limit=POOL_SIZE)
    assert isinstance(made, AiohttpTransport) and made._slots is not None
    request = bot_api_request(adapter._transport)
    assert isinstance(request._client._transport, AiohttpTransport)  # PTB's client, read only
