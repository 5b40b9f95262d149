"""The optional HTTP endpoint: ``/healthz`` (alive), ``/readyz`` (ready), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import web

#: How long /readyz waits for the store's write probe (it waits for a busy write lock).
PROBE_TIMEOUT = 3.0


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9090`` for IPv6) -> (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class HealthServer:
    """A tiny aiohttp server; ``ready`` and the store's ``writable`` probe answer /readyz."""

    def __init__(self, listen: str, ready: Callable[[], bool],
                 metrics: Callable[[], bytes] | None = None,
                 writable: Callable[[], Awaitable[bool]] | None = None) -> None:
        self._host, self._port = parse_listen(listen)
        self._ready = ready
        self._metrics = metrics
        self._writable = writable
        self._probe: asyncio.Task[bool] | None = None
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_page)
        self.app = app

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        if not self._ready():
            return web.Response(text="not ready\n", status=503)
        if not await self._can_write():
            # A read-only database answers reads, so only a write probe shows every job failing.
            return web.Response(
                text="not ready: the database or the image store cannot be written\n", status=503)
        return web.Response(text="ready\n")

    async def _can_write(self) -> bool:
        """The store's write probe; one at a time however often /readyz is asked."""
        if self._writable is None:
            return True
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._writable())
        probe = self._probe
        # Not cancelled on timeout: it holds the store's lock and finishes its rollback itself.
        done, _ = await asyncio.wait({probe}, timeout=PROBE_TIMEOUT)
        return bool(done) and not probe.cancelled() and probe.exception() is None and probe.result()

    async def _metrics_page(self, _: web.Request) -> web.Response:
        body = self._metrics() if self._metrics else b""
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    @property
    def port(self) -> int:
        """The bound port (useful when listening on port 0)."""
        if self._runner is None or not self._runner.addresses:
            return self._port
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        """Bind and serve."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        """Stop serving (after any write probe still running)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._probe is not None:
            with contextlib.suppress(Exception):
                await self._probe
