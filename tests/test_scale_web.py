"""Web consoles in two processes sharing Redis: an operator logged in on one is logged in on the
other (a reload behind a load balancer), a logout on either ends it on both, and visitor cookies
and CSRF tokens signed by one are good on the other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from adapters.web import WebConsole
from bot.bootstrap import build_core
from tests.conftest import make_settings
from tests.redis_service import REDIS_URL, redis_prefix
from tests.test_web_harness import TOKEN, Visitor


@asynccontextmanager
async def console(stack: AsyncExitStack, data: Path, prefix: str) -> AsyncIterator[str]:
    """A core and a console (no secret given: the shared one) on ``prefix``; its URL."""
    core = build_core(make_settings(data, redis={"url": REDIS_URL, "prefix": prefix}))
    await core.start()
    stack.push_async_callback(core.stop, 0)
    web = WebConsole(core.api, listen="127.0.0.1:0", token=TOKEN)
    stop = asyncio.Event()
    task = asyncio.create_task(web.run(stop))
    try:
        async with asyncio.timeout(10):
            while not web.connected:
                if task.done():
                    task.result()  # it failed to start: say why
                await asyncio.sleep(0.01)
        yield web.url
    finally:
        stop.set()
        await task


async def test_a_session_holds_on_every_process(tmp_path: Path) -> None:
    async with redis_prefix() as prefix, AsyncExitStack() as stack:
        a = await stack.enter_async_context(console(stack, tmp_path / "a", prefix))
        b = await stack.enter_async_context(console(stack, tmp_path / "b", prefix))
        browser = Visitor(a)
        stack.push_async_callback(browser.close)
        await browser.open("/operator")
        status, _ = await browser.post("/operator/login", {"token": TOKEN, "csrf": browser.csrf},
                                       csrf="")
        assert status == 303
        browser.base = b  # the next request reaches the other process
        page = await browser.open("/operator")
        assert 'name="token"' not in page and "/operator/logout" in page
        status, _ = await browser.post("/operator/logout", {"csrf": browser.csrf}, csrf="")
        assert status == 303  # B accepted a CSRF token signed with the secret both share
        browser.base = a
        assert 'name="token"' in await browser.open("/operator")
