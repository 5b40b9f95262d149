"""``imagine-bot run`` in-process: both platforms on one loop, graceful stop, failure policy."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from adapters.cli.runner import run
from bot.config import Settings
from bot.warmup import YOUNG_GENERATION
from tests.fake_discord import FakeDiscord, result_of
from tests.fake_telegram import BOB, TOKEN, FakeTelegram

Factory = Callable[..., Settings]


def both(settings_factory: Factory, tg: FakeTelegram, dc: FakeDiscord, **sections: Any) -> Settings:
    """Settings with Telegram and Discord pointed at the fakes."""
    return settings_factory(
        telegram={"enabled": True, "base_url": tg.base_url, "base_file_url": tg.base_file_url,
                  **sections.pop("telegram", {})},
        discord={"enabled": True, "api_base_url": dc.api_url, "gateway_url": dc.gateway_url},
        limits={"shutdown_grace_seconds": 2.0, **sections.pop("limits", {})}, **sections)


class Runner:
    """``run()`` as a task, with the stop event its signal handler would set."""

    def __init__(self, settings: Settings) -> None:
        self.stop: asyncio.Event | None = None
        self.task = asyncio.create_task(run(settings, install_signals=self._grab))

    def _grab(self, stop: asyncio.Event) -> None:
        self.stop = stop

    async def finish(self) -> int:
        """Signal a stop and wait for the exit code."""
        assert self.stop is not None
        self.stop.set()
        return await asyncio.wait_for(self.task, 30)


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both platforms' tokens in the environment, as an operator would export them."""
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "test-token")


@pytest.mark.usefixtures("tokens")
async def test_one_process_serves_both_platforms_and_stops_cleanly(settings_factory: Factory) -> None:
    tg = FakeTelegram()
    await tg.start()
    try:
        async with FakeDiscord() as dc:
            before = gc.get_threshold()
            runner = Runner(both(settings_factory, tg, dc))
            await dc.wait_ready(0, timeout=15)
            tg.user_sends("/imagine a lighthouse")
            photo = await tg.wait_for("sendPhoto", timeout=15)
            assert photo.text.startswith("a lighthouse")
            ix = await dc.slash("imagine", prompt="a windmill", user=dc.user("dora"))
            result = await result_of(dc, ix, timeout=15)
            assert "a windmill" in result.text
            assert gc.get_freeze_count() > 0  # start-up's heap is out of the collections' walk
            assert gc.get_threshold()[0] == YOUNG_GENERATION
            assert await runner.finish() == 0
            assert gc.get_freeze_count() == 0  # and back in it once the run is over
            assert gc.get_threshold() == before  # the collector as it was
    finally:
        await tg.stop()


@pytest.mark.usefixtures("tokens")
async def test_running_jobs_are_delivered_on_stop_and_queued_ones_told(settings_factory: Factory) -> None:
    tg = FakeTelegram()
    await tg.start()
    try:
        async with FakeDiscord() as dc:
            settings = both(settings_factory, tg, dc,
                            providers={"demo": {"api": "demo", "demo_delay_seconds": 1.0}},
                            limits={"global_concurrency": 1})
            runner = Runner(settings)
            await dc.wait_ready(0, timeout=15)
            tg.user_sends("/imagine first, running")
            await tg.wait_for("sendMessageDraft", timeout=10)
            await asyncio.sleep(0.2)
            tg.user_sends("/imagine second, queued", user=BOB)
            await tg.wait_for("sendMessageDraft", lambda c: "position" in c.text.lower(),
                              timeout=10)
            code_task = asyncio.create_task(runner.finish())
            photo = await tg.wait_for("sendPhoto", timeout=15)
            assert photo.text.startswith("first, running")
            told = await tg.wait_for("sendMessage", lambda c: "Cancelled" in c.text, timeout=15)
            assert "Nothing was charged" in told.text
            assert await code_task == 0
    finally:
        await tg.stop()


@pytest.mark.usefixtures("tokens")
@pytest.mark.parametrize("policy", ["stop", "continue"])
async def test_a_platform_that_fails_to_start_is_reported(
        settings_factory: Factory, policy: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "999:WRONG-token-for-this-bot")
    tg = FakeTelegram()
    await tg.start()
    caplog.set_level(logging.ERROR)
    try:
        async with FakeDiscord() as dc:
            settings = both(settings_factory, tg, dc, bot={"adapter_failure": policy})
            runner = Runner(settings)
            if policy == "stop":
                assert await asyncio.wait_for(runner.task, 20) == 2
            else:
                await dc.wait_ready(0, timeout=15)
                ix = await dc.slash("imagine", prompt="still here", user=dc.user("dora"))
                assert "still here" in (await result_of(dc, ix, timeout=15)).text
                assert await runner.finish() == 2
            logged = caplog.text
            assert "telegram adapter stopped" in logged and "TELEGRAM_BOT_TOKEN" in logged
            assert "WRONG-token" not in logged
    finally:
        await tg.stop()


@pytest.mark.usefixtures("tokens")
async def test_health_readiness_and_metrics_endpoint(settings_factory: Factory,
                                                     unused_tcp_port: int) -> None:
    tg = FakeTelegram()
    await tg.start()
    try:
        async with FakeDiscord() as dc:
            settings = both(settings_factory, tg, dc, http={"listen": f"127.0.0.1:{unused_tcp_port}"})
            runner = Runner(settings)
            await dc.wait_ready(0, timeout=15)
            tg.user_sends("/imagine a metric fox")
            await tg.wait_for("sendPhoto", timeout=15)
            base = f"http://127.0.0.1:{unused_tcp_port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/healthz") as resp:
                    assert resp.status == 200
                for _ in range(50):  # readiness follows the adapters' connections
                    async with http.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                    await asyncio.sleep(0.1)
                assert resp.status == 200
                done = 'imagine_jobs_total{model="nano-banana-2.1",outcome="ok",platform="telegram"} 1.0'
                for _ in range(50):  # the job is counted when the adapter reports its delivery
                    async with http.get(f"{base}/metrics") as resp:
                        text = await resp.text()
                    if done in text:
                        break
                    await asyncio.sleep(0.1)
            assert done in text
            assert "imagine_queue_depth" in text and "imagine_usd_spent_total" in text
            assert await runner.finish() == 0
    finally:
        await tg.stop()
