"""The optional HTTP endpoint: ``/healthz`` (alive), ``/readyz`` (ready), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9090`` for IPv6) -> (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class HealthServer:
    """A tiny aiohttp server; ``ready`` is asked on every /readyz."""

    def __init__(self, listen: str, ready: Callable[[], bool],
                 metrics: Callable[[], bytes] | None = None) -> None:
        self._host, self._port = parse_listen(listen)
        self._ready = ready
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_page)
        self.app = app

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        ok = self._ready()
        return web.Response(text="ready\n" if ok else "not ready\n", status=200 if ok else 503)

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
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
