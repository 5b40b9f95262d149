"""The benchmarks' Gemini fake in a process of its own, as Google is a server of its own.

In one process with the Telegram and Discord fakes, writing a burst's 500 answers (800 MB at
1K) held up that process's event loop, and with it the Bot API fake's reading of the photos
the bot was uploading meanwhile: uploads took 0.4-0.8 s instead of 10 ms, and arrived bunched,
which the bench counted against the bot. Here the upstream serves from its own event loop;
the parent sets its delay and reads when each job's image was ready over a control port
(clocks are ``time.monotonic``, one clock for every process on the machine).

Run by :class:`RemoteUpstream`; ``python -m bench.e2e_upstream --sizes 1K,4K`` prints two URLs
(the API, the control port) and serves until its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.e2e_bot import proc_cpu  # noqa: E402
from bench.e2e_fakes import BenchUpstream, gemini_answer, image_1k, image_4k  # noqa: E402


async def _serve(sizes: list[str]) -> None:
    made = time.monotonic()
    bodies = {"1K": gemini_answer(image_1k())}
    if "4K" in sizes:
        bodies["4K"] = gemini_answer(await asyncio.to_thread(image_4k))
    upstream = BenchUpstream(1.0, bodies)
    await upstream.start()

    async def delay(request: web.Request) -> web.Response:
        upstream.delay = float(request.query["value"])
        return web.json_response({})

    async def reset(request: web.Request) -> web.Response:
        upstream.ready.clear()
        gc.collect()  # between scenarios: none while one runs (see below)
        return web.json_response({})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response(upstream.ready)

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"sizes": {k: len(v) for k, v in bodies.items()},
                                  "made": made_in})

    made_in = time.monotonic() - made
    app = web.Application()
    app.router.add_get("/delay", delay)
    app.router.add_get("/reset", reset)
    app.router.add_get("/ready", ready)
    app.router.add_get("/info", info)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    # Gemini does not stop for this process's collections: a full one held every answer due
    # meanwhile for 60-160 ms (gc callbacks). Collected on each /reset (a scenario's start).
    gc.disable()
    print(upstream.url, f"http://127.0.0.1:{port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    await runner.cleanup()
    await upstream.stop()


class RemoteUpstream:
    """The parent's handle on the upstream process: its URL, delay and ready times."""

    def __init__(self, sizes: list[str]) -> None:
        self.sizes = sizes
        self.url = ""
        self._control = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> dict[str, Any]:
        """Spawn it and wait until it serves; what it serves (answer sizes, seconds to make)."""
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.e2e_upstream", "--sizes", ",".join(self.sizes),
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert self._proc.stdout is not None
        line = (await self._proc.stdout.readline()).decode().split()
        if len(line) != 2:
            raise SystemExit("the upstream process did not start")
        self.url, self._control = line
        self._http = aiohttp.ClientSession()
        return await self._get("/info")

    async def _get(self, path: str, **query: str) -> Any:
        assert self._http is not None
        async with self._http.get(self._control + path, params=query) as resp:
            return await resp.json()

    async def set_delay(self, seconds: float) -> None:
        """Every answer from now on comes after ``seconds``."""
        await self._get("/delay", value=str(seconds))

    async def reset(self) -> None:
        """Forget the ready times so far."""
        await self._get("/reset")

    async def ready(self) -> dict[str, float]:
        """When each job's image was ready (its answer written out), by the job's marker."""
        return dict(await self._get("/ready"))

    def cpu(self) -> float:
        """The process's CPU seconds so far."""
        return proc_cpu(self._proc.pid) if self._proc is not None else 0.0

    async def stop(self) -> None:
        """Close its stdin and wait for it."""
        if self._http is not None:
            await self._http.close()
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()


def main() -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1K")
    asyncio.run(_serve(parser.parse_args().sizes.split(",")))


if __name__ == "__main__":
    main()
