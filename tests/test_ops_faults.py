"""Platform faults mid-run: the chat platforms drop connections and answer 429 and 5xx.

Telegram: getUpdates and sendPhoto fail with 502 / 500 / 429 and the whole Bot API goes away for
a while in the middle of a job; the bot keeps polling, and every result still arrives and is
charged once. Discord: the gateway websocket is dropped (discord.py reconnects and resumes) and
REST answers 5xx and 429 (with Cloudflare's ``Via`` header, which marks a real rate limit) on the
follow-up that carries the result; discord.py retries, the result arrives, and is charged once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from bot.config import Settings
from bot.providers.demo import DemoProvider
from tests.fake_discord import MIB, FakeDiscord, _Routes, discord_settings, result_of
from tests.fake_discord import running_bot as running_discord
from tests.fake_telegram import ALICE, BOB, CAROL, FakeUser, running_bot

Factory = Callable[..., Settings]

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


async def ledger_kinds(bot: Any, user: FakeUser, want: list[str], wait: float = 10.0) -> list[str]:
    """The user's ledger kinds once they equal ``want`` (or whatever they are after ``wait``)."""
    return list(await bot.ledger(user, want, wait=wait))


async def test_telegram_polling_faults_are_ridden_out(settings_factory: Factory) -> None:
    async with running_bot(settings_factory, providers={"demo": DemoProvider(delay=0.2)}) as bot:
        fake = bot.fake
        assert bot.adapter is not None
        # getUpdates: two 502s in a row (a Bot API outage behind its load balancer).
        fake.fail_next("getUpdates", 2, code=502, description="Bad Gateway")
        fake.user_sends("/imagine after two bad gateways")
        for _ in range(2):
            await fake.wait_for("getUpdates", ok=False, timeout=10)
        photo = await fake.wait_for("sendPhoto", timeout=20)
        assert photo.text.startswith("after two bad gateways")
        # A 500, then a flood-control 429 with retry_after.
        fake.fail_next("getUpdates", code=500, description="Internal Server Error")
        fake.fail_next("getUpdates", code=429, retry_after=1)
        fake.user_sends("/imagine after a 500 and a 429", user=BOB)
        for _ in range(2):
            await fake.wait_for("getUpdates", ok=False, timeout=10)
        photo = await fake.wait_for("sendPhoto", timeout=20)
        assert photo.text.startswith("after a 500 and a 429")
        assert await ledger_kinds(bot, ALICE, ["reserve", "settle"]) == ["reserve", "settle"]
        assert await ledger_kinds(bot, BOB, ["reserve", "settle"]) == ["reserve", "settle"]


async def test_telegram_send_faults_still_deliver(settings_factory: Factory) -> None:
    async with running_bot(settings_factory, providers={"demo": DemoProvider(delay=0.2)}) as bot:
        fake = bot.fake
        # sendPhoto: a 502 from Telegram's front end, then a 500: transient, so retried.
        fake.fail_next("sendPhoto", code=502, description="Bad Gateway")
        fake.fail_next("sendPhoto", code=500, description="Internal Server Error")
        fake.user_sends("/imagine through a flaky front end")
        photo = await fake.wait_for("sendPhoto", timeout=20)
        assert photo.text.startswith("through a flaky front end")
        assert len(fake.calls_of("sendPhoto", ok=False)) == 2
        assert await ledger_kinds(bot, ALICE, ["reserve", "settle"]) == ["reserve", "settle"]
        # A 429 on sendPhoto is waited out.
        fake.fail_next("sendPhoto", code=429, retry_after=1)
        fake.user_sends("/imagine under flood control", user=BOB)
        photo = await fake.wait_for("sendPhoto", timeout=20)
        assert photo.text.startswith("under flood control")
        assert await ledger_kinds(bot, BOB, ["reserve", "settle"]) == ["reserve", "settle"]
        await fake.expect_none("sendMessage", lambda c: "deliver" in c.text)


async def test_telegram_outage_in_the_middle_of_a_job(settings_factory: Factory) -> None:
    async with running_bot(settings_factory, providers={"demo": DemoProvider(delay=1.0)}) as bot:
        fake = bot.fake
        fake.user_sends("/imagine while the network blinks", user=CAROL)
        await fake.wait_for("sendMessageDraft")  # the job is running
        await fake.go_offline()  # polling, drafts and the upload all fail for a while
        await asyncio.sleep(1.8)
        await fake.go_online()
        photo = await fake.wait_for("sendPhoto", timeout=30)
        assert photo.chat_id == CAROL.id
        assert await ledger_kinds(bot, CAROL, ["reserve", "settle"]) == ["reserve", "settle"]
        fake.user_sends("/imagine after the outage")
        await fake.wait_for("sendPhoto", lambda c: c.chat_id == ALICE.id, timeout=20)


class FlakyDiscord(FakeDiscord):
    """The fake Discord, able to answer the next requests on a path with a 5xx."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures: list[tuple[str, int]] = []
        self.failed: list[tuple[str, int]] = []

    def fail_next(self, path_fragment: str, status: int, times: int = 1) -> None:
        """The next ``times`` requests whose path contains ``path_fragment`` get ``status``."""
        self.failures += [(path_fragment, status)] * times

    async def start(self) -> FakeDiscord:
        """FakeDiscord.start with one more middleware in front of the fake's own."""

        @web.middleware
        async def flaky(request: web.Request, handler: Any) -> web.StreamResponse:
            for entry in self.failures:
                if entry[0] in request.path:
                    self.failures.remove(entry)
                    self.failed.append((request.path, entry[1]))
                    await request.read()
                    return web.Response(status=entry[1], text="upstream connect error",
                                        content_type="text/plain")
            response: web.StreamResponse = await handler(request)
            return response

        app = web.Application(client_max_size=256 * MIB, middlewares=[flaky])
        _Routes(self).install(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close every gateway websocket with ``code`` (4000: unknown error, resumable)."""
        for ws in list(self._sockets):
            await ws.close(code=code, message=b"dropped by the test")


async def test_discord_gateway_drop_and_rest_faults(settings_factory: Factory) -> None:
    slow = {"demo": {"api": "demo", "demo_delay_seconds": 1.0}}
    async with FlakyDiscord() as fake, running_discord(
            fake, discord_settings(settings_factory, fake, providers=slow)) as bot:
        alice = fake.user("alice")
        ix = await fake.slash("imagine", prompt="through a dropped gateway", user=alice)
        await fake.wait_for("ack", lambda e: e.interaction is ix)
        old = set(fake._sockets)
        await fake.drop_gateway()
        async with asyncio.timeout(20):  # discord.py opens a new websocket and resumes
            while not set(fake._sockets) - old:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert (await result_of(fake, ix, timeout=20)).attachments
        async with asyncio.timeout(10):
            while not bot.adapter.connected:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        # The result's follow-up meets a 502 and a 500, then a 429 with Via: retried by
        # discord.py, delivered once.
        fake.fail_next("/webhooks/", 502)
        fake.fail_next("/webhooks/", 500)
        started = time.monotonic()
        ix = await fake.slash("imagine", prompt="through a flaky edge", user=alice)
        result = await result_of(fake, ix, timeout=30)
        assert result.attachments and "through a flaky edge" in result.text
        assert [status for _, status in fake.failed] == [502, 500]
        fake.rate_limit_once("/webhooks/")
        ix = await fake.slash("imagine", prompt="through a rate limit", user=alice)
        result = await result_of(fake, ix, timeout=30)
        assert result.attachments
        assert any(e.kind == "rate_limited" for e in fake.events)
        print(f"\ndiscord: flaky follow-ups delivered in {time.monotonic() - started:.1f} s")
        want = ["reserve", "settle"] * 3
        async with asyncio.timeout(5):  # the result is bound (and settled) just after it is sent
            # Binding leaves no trace on the wire, so the store is polled.
            while [e.kind for e in await bot.core.store.ledger(  # noqa: ASYNC110
                    f"discord:{alice.id}")] != want:
                await asyncio.sleep(0.02)
        assert not [e for e in fake.errors if e.data["status"] != 429]


async def test_first_feedback_does_not_wait_for_the_store(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        fake, store = bot.fake, bot.c.store
        real = store.get_user

        answered: list[float] = []  # when the busy store answered, on the fake's clock

        async def slow_get_user(key: str) -> Any:  # a store busy with everyone else's jobs
            await asyncio.sleep(0.8)
            answered.append(time.monotonic())
            return await real(key)

        store.get_user = slow_get_user  # type: ignore[method-assign]
        asked = fake.user_sends("/imagine while the database is busy")
        action = await fake.wait_for("sendMessageDraft")  # "Thinking...": needs no language
        # Event order, not a wall-clock bound: the feedback reached Telegram before the store
        # answered its first read, so it did not wait for it (however loaded the machine is).
        assert not answered or action.at < answered[0], (action.at, answered)
        photo = await fake.wait_for("sendPhoto", timeout=20)
        assert photo.reply_to == asked["message_id"]


async def test_flood_budget_goes_to_results_first() -> None:
    from adapters.telegram.ratelimit import Lane, Limits, RateLimiter, SendBudget, Skipped, lane

    limiter = RateLimiter(SendBudget(Limits(rate=4, burst=4)))
    sent: list[tuple[str, float]] = []

    async def call(endpoint: str, chat: int = 1) -> bool:
        async def post(*args: Any, **kwargs: Any) -> bool:
            sent.append((endpoint, time.monotonic()))
            return True

        return bool(await limiter.process_request(post, (), {}, endpoint,
                                                  {"chat_id": chat}, None))

    async def result(chat: int) -> bool:
        with lane(Lane.RESULT):
            return await call("sendPhoto", chat)

    started = time.monotonic()
    await asyncio.gather(*(result(chat) for chat in range(1, 7)))  # 4 now, 2 later
    assert time.monotonic() - started > 0.2
    # The budget is spent: chat actions and drafts still go out at once, status is dropped ...
    await asyncio.gather(*(call("sendChatAction", chat) for chat in range(1, 11)),
                         *(call("sendMessageDraft", chat) for chat in range(11, 21)))
    assert len([e for e, _ in sent if e in ("sendChatAction", "sendMessageDraft")]) == 20

    async def status() -> None:
        with lane(Lane.STATUS):
            await call("editMessageText", 99)

    with pytest.raises(Skipped):
        await asyncio.create_task(status())
    # ... and once the budget has room again, status traffic is welcome.
    await asyncio.sleep(1.1)
    await asyncio.create_task(status())
    assert sent[-1][0] == "editMessageText"
