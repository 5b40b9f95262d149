"""Several Telegram receivers behind one webhook URL, sharing Redis: one registers the webhook,
every one checks the secret, and updates reaching either are answered."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.telegram.webhook import SECRET_HEADER
from bot.config import Settings
from bot.domain import MessageRef
from tests.conftest import make_settings
from tests.fake_telegram import BotHarness, FakeTelegram, png
from tests.redis_service import REDIS_URL, redis_prefix

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def receivers(tmp_path: Path, count: int, **telegram: Any) -> AsyncIterator[
        tuple[FakeTelegram, list[BotHarness], list[str]]]:
    """``count`` bots on one fake, each with its own webhook port, on one Redis prefix."""
    fake = FakeTelegram()
    await fake.start()
    async with redis_prefix() as prefix, AsyncExitStack() as stack:
        stack.push_async_callback(fake.stop)
        bots, urls = [], []
        for i in range(count):
            port = free_port()
            urls.append(f"http://127.0.0.1:{port}/hook")
            settings: Settings = make_settings(
                tmp_path / f"p{i}", redis={"url": REDIS_URL, "prefix": prefix},
                limits={"shutdown_grace_seconds": 1.0},
                telegram={"base_url": fake.base_url, "base_file_url": fake.base_file_url,
                          "webhook_url": urls[0], "webhook_listen": f"127.0.0.1:{port}",
                          **telegram})
            bot = BotHarness(fake, settings)
            await bot.start()
            stack.push_async_callback(bot.stop)
            bots.append(bot)
        yield fake, bots, urls


async def test_one_receiver_registers_the_webhook(tmp_path: Path) -> None:
    async with receivers(tmp_path, 3) as (fake, bots, urls):
        assert len(fake.calls_of("setWebhook")) == 1
        assert [b.adapter is not None and b.adapter.connected for b in bots] == [True] * 3
        assert fake.webhook is not None and fake.webhook["url"] == urls[0]
        secret = fake.webhook["secret"]
        async with aiohttp.ClientSession() as http:
            for url in urls:  # every receiver checks the secret on every request
                async with http.post(url, json={"update_id": 1},
                                     headers={SECRET_HEADER: "wrong"}) as response:
                    assert response.status == 403
        assert secret
        fake.webhook["url"] = urls[1]  # the balancer sends this update to the second receiver
        fake.user_sends("/imagine from the second")
        photo = await fake.wait_for("sendPhoto")
        assert photo.text.startswith("from the second")


async def test_webhook_owner_setting_decides(tmp_path: Path) -> None:
    async with receivers(tmp_path, 2, webhook_owner=False) as (fake, _, _):
        assert fake.calls_of("setWebhook") == []


async def test_album_parts_reaching_different_receivers_make_one_job(tmp_path: Path) -> None:
    async with receivers(tmp_path, 2) as (fake, bots, urls):
        assert fake.webhook is not None
        parts = []
        for i in range(3):
            fake.webhook["url"] = urls[i % 2]  # the balancer alternates
            parts.append(fake.user_sends(photo=png(color=(i * 80, 40, 40)), media_group_id="A1",
                                         caption="/imagine combine these three" if i == 1
                                         else None))
            await asyncio.sleep(0.05)  # this part's POST is out before the next is routed
        photo = await fake.wait_for("sendPhoto")
        assert photo.reply_to == parts[1]["message_id"]
        ref = MessageRef("telegram", str(photo.message["chat"]["id"]),
                         str(photo.message["message_id"]))
        await asyncio.sleep(0.3)  # binding follows the send
        turns = [t for b in bots if (t := await b.c.service.turn_for(ref)) is not None]
        assert len(turns) == 1 and len(set(turns[0].input_hashes)) == 3
        await fake.expect_none("sendPhoto")  # one job for the whole album
