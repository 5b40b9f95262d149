"""The web console harness (a real server on 127.0.0.1:0 and a cookie-keeping client), plus
unit tests of its security helpers: the console token, signed visitor ids, the login limiter."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from adapters.web import WebConsole
from adapters.web.security import LoginLimiter, Signer, console_token
from bot.bootstrap import Core, build_core
from bot.config import Settings
from bot.providers.base import ImageProvider

TOKEN = "operator-test-token-0123456789"
Factory = Callable[..., Settings]


@dataclass
class Running:
    """A started core with a console serving it."""

    core: Core
    console: WebConsole

    @property
    def url(self) -> str:
        """Where the console listens."""
        return self.console.url

    async def ledger_kinds(self) -> list[str]:
        """Every ledger row's kind, oldest first."""
        return [e.kind for e in await self.core.store.ledger()]


@asynccontextmanager
async def listening(core: Core, port: int = 0) -> AsyncIterator[tuple[WebConsole, asyncio.Event]]:
    """A console over ``core`` on a loopback ``port``, up; leaving sets its stop and waits."""
    console = WebConsole(core.api, listen=f"127.0.0.1:{port}", token=TOKEN, secret=b"k" * 32)
    stop = asyncio.Event()
    task = asyncio.create_task(console.run(stop))
    try:
        async with asyncio.timeout(10):
            while not console.connected:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield console, stop
    finally:
        stop.set()
        await task


@asynccontextmanager
async def running_console(settings_factory: Factory, *,
                          fakes: dict[str, ImageProvider] | None = None,
                          **sections: Any) -> AsyncIterator[Running]:
    """Core + WebConsole on a free loopback port; drained and closed like ``imagine-bot run``."""
    core = build_core(settings_factory(**sections), providers=fakes)
    await core.start()
    try:
        async with listening(core) as (console, _):
            try:
                yield Running(core, console)
            finally:
                await core.scheduler.drain(0)
                await core.service.wait_idle(5)
    finally:
        await core.stop(grace=0)


class Visitor:
    """One browser, at the HTTP level: keeps its cookies, reads its CSRF token from the page."""

    def __init__(self, base: str, language: str = "en-US") -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                          headers={"Accept-Language": language})
        self.csrf = ""
        self.page = ""

    async def close(self) -> None:
        """Close the session."""
        await self.http.close()

    async def open(self, path: str = "/") -> str:
        """GET a page (and pick up the CSRF token it carries)."""
        async with self.http.get(self.base + path) as res:
            assert res.status == 200, await res.text()
            self.page = await res.text()
        found = re.search(r'"csrf": "([^"]+)"', self.page) or re.search(
            r'name="csrf" value="([^"]+)"', self.page)
        if found:
            self.csrf = found.group(1)
        return self.page

    @property
    def uid(self) -> str:
        """This browser's anonymous user id."""
        cookie = self.http.cookie_jar.filter_cookies(URL(self.base))["ib_web"]
        return cookie.value.rpartition(".")[0]

    async def post(self, path: str, data: Any, *, csrf: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST with the CSRF header; returns (status, JSON or text)."""
        token = self.csrf if csrf is None else csrf
        sent = {**({"X-CSRF-Token": token} if token else {}), **(headers or {})}
        async with self.http.post(self.base + path, data=data, headers=sent,
                                  allow_redirects=False) as res:
            body = await res.text()
            try:
                return res.status, json.loads(body)
            except ValueError:
                return res.status, body

    async def submit(self, prompt: str, *, files: list[tuple[str, bytes, str]] | None = None,
                     **fields: str) -> tuple[int, Any]:
        """The composer's POST /api/jobs."""
        form = aiohttp.FormData()
        form.add_field("prompt", prompt)
        for name, value in fields.items():
            form.add_field(name, value)
        for filename, data, mime in files or []:
            form.add_field("files", data, filename=filename, content_type=mime)
        return await self.post("/api/jobs", form)

    async def act(self, action: str) -> tuple[int, Any]:
        """A result button."""
        form = aiohttp.FormData()
        form.add_field("action", action)
        return await self.post("/api/act", form)

    async def status(self, job: str) -> tuple[int, Any]:
        """GET a job's state."""
        async with self.http.get(f"{self.base}/api/jobs/{job}") as res:
            return res.status, (await res.json() if res.status == 200 else None)

    async def wait(self, job: str, seconds: float = 15.0) -> dict[str, Any]:
        """Poll a job until it has its result (or error)."""
        async with asyncio.timeout(seconds):
            while True:
                status, data = await self.status(job)
                assert status == 200
                if "html" in data:
                    return dict(data)
                await asyncio.sleep(0.05)

    async def imagine(self, prompt: str, **fields: Any) -> dict[str, Any]:
        """Submit and wait for the result."""
        status, data = await self.submit(prompt, **fields)
        assert status == 202, data
        return await self.wait(data["job"])


@asynccontextmanager
async def visitor(running: Running, language: str = "en-US") -> AsyncIterator[Visitor]:
    """A Visitor that has opened the playground."""
    v = Visitor(running.url, language)
    try:
        await v.open("/")
        yield v
    finally:
        await v.close()


def turn_of(result: dict[str, Any]) -> str:
    """The turn id of a finished job's card."""
    found = re.search(r'data-turn="([^"]+)"', result["html"])
    assert found, result["html"]
    return found.group(1)


# ----- unit tests of the security helpers ------------------------------------------------------


def test_console_token_is_created_once_with_private_mode(settings_factory: Factory,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGINE_CONSOLE_TOKEN", raising=False)
    settings = settings_factory()
    first = console_token(settings)
    path = Path(settings.bot.data_dir) / "console-token"
    assert len(first) >= 40 and path.read_text().strip() == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert console_token(settings) == first
    monkeypatch.setenv("IMAGINE_CONSOLE_TOKEN", "from-the-environment")
    assert console_token(settings) == "from-the-environment"


def test_visitor_cookies_are_signed() -> None:
    signer = Signer(b"secret" * 6)
    uid, cookie = signer.new_visitor()
    assert signer.visitor(cookie) == uid
    assert re.fullmatch(r"[0-9A-Za-z_-]+", uid)
    assert signer.visitor(cookie.replace(uid, "someoneelse")) is None
    assert signer.visitor(cookie + "x") is None
    assert signer.visitor(None) is None and signer.visitor("nodot") is None
    assert Signer(b"other" * 7).visitor(cookie) is None
    assert signer.csrf_ok(uid, signer.csrf(uid))
    assert not signer.csrf_ok(uid, signer.csrf("someoneelse"))
    assert not signer.csrf_ok(None, signer.csrf(uid))


def test_login_limiter_counts_failures_per_client() -> None:
    now = [0.0]
    limiter = LoginLimiter(per_client=3, window=60.0, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("a") == 0
        assert limiter.failed("a") == 0  # within the allowance: answered plainly
    assert 0 < limiter.retry_after("a") <= 61
    assert 0 < limiter.failed("a") <= 61  # past it: slowed and answered 429
    assert limiter.retry_after("b") == 0  # other addresses are not affected
    now[0] = 61.0
    assert limiter.retry_after("a") == 0
    limiter.failed("a")
    limiter.succeeded("a")
    assert limiter.retry_after("a") == 0
