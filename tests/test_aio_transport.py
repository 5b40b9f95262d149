"""The aiohttp transport under httpx: bytes, keep-alive, and failures as httpx exceptions."""

from __future__ import annotations

import asyncio
import gc
import socket
import weakref
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from multidict import CIMultiDict

from bot.budget import DeliveryBudget, Lease, reading
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
        app = web.Application()
        app.router.add_post("/big", self.big)
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
