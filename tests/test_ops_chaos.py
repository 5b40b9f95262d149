"""Chaos: an upstream that fails at random in every way it can, for 500 jobs from 50 users.

A seeded fake Gemini upstream answers 429 (with and without a retry hint), 500, 503, slowly,
too slowly (past the job timeout), by resetting the connection, with an HTML error page, with a
truncated body, with a refusal, or with an image. Every job must end in a result or a clear,
translated message (never the internal-error one), the credits must add up exactly (ledger sums
equal the settled reservations; a refunded reservation nets zero), and the process's memory must
be flat after the run (figures printed: RSS, and what tracemalloc still holds from the run).
A smaller round goes through the real Telegram adapter with the same upstream.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import random
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.bootstrap import Core, build_core
from bot.config import ProviderSection, Settings
from bot.domain import Actor, ChatRef, ImageRequest, MessageRef, Reply
from bot.messages import Messages
from bot.providers.factory import build_provider
from tests.fake_telegram import FakeUser, running_bot
from tests.fake_upstream import FakeUpstream, b64, gemini_body, google_error, png
from tests.fake_upstream import Reply as UpReply
from tests.outcomes import Jobs
from tests.test_ops_crash import check_books, query

Factory = Callable[..., Settings]
KEY = "sk-chaos-KEY-0c1d2e3f4a5b6c7d"
PAGE = os.sysconf("SC_PAGE_SIZE")

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

#: What a job may end in besides a result: each a catalog message a user understands.
CLEAR = {"error.busy", "error.upstream", "error.timeout", "error.refused", "error.no_image"}
#: (kind, weight) of the upstream's answers.
WEIGHTS = [("ok", 40), ("slow", 8), ("too_slow", 1), ("429", 8), ("429_hint", 4),
           ("429_long", 2), ("500", 8), ("503", 8), ("reset", 6), ("html", 4), ("html_200", 2),
           ("truncated", 5), ("refused", 3), ("text_only", 2)]


class ChaosUpstream(FakeUpstream):
    """The fake upstream answering each generateContent with a seeded random fault."""

    def __init__(self, seed: int, *, slow: float = 0.3, too_slow: float = 3.0) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.slow, self.too_slow = slow, too_slow
        self.counts: collections.Counter[str] = collections.Counter()
        self.image = png(64, 64)
        kinds, weights = zip(*WEIGHTS, strict=True)
        self._kinds, self._weights = list(kinds), list(weights)

    def reply(self, kind: str) -> UpReply:
        """The scripted answer for one fault kind."""
        ok = gemini_body([{"inlineData": {"mimeType": "image/png", "data": b64(self.image)}}])
        match kind:
            case "ok":
                return UpReply(json=ok)
            case "slow":
                return UpReply(json=ok, delay=self.slow)
            case "too_slow":
                return UpReply(json=ok, delay=self.too_slow)
            case "429":
                return google_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted")
            case "429_hint":
                return google_error(429, "RESOURCE_EXHAUSTED", "Please retry in 10ms.", [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.01s"}])
            case "429_long":  # longer than the retry cap: fail at once, "try again in 30 s"
                return google_error(429, "RESOURCE_EXHAUSTED", "slow down",
                                    headers={"Retry-After": "30"})
            case "500":
                return google_error(500, "INTERNAL", "An internal error has occurred.")
            case "503":
                return google_error(503, "UNAVAILABLE", "The model is overloaded.")
            case "reset":
                return UpReply(drop=True)
            case "html":
                return UpReply(status=502, content_type="text/html", body=(
                    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 "
                    "Bad Gateway</h1></center><hr><center>nginx</center></body></html>"))
            case "html_200":  # a relay's login or error page, served as a success
                return UpReply(content_type="text/html", body=(
                    "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please sign "
                    "in to continue.</body></html>"))
            case "truncated":
                return UpReply(json=ok, truncate_at=40)
            case "refused":
                return UpReply(json=gemini_body([], finish="IMAGE_SAFETY"))
            case "text_only":
                return UpReply(json=gemini_body([{"text": "I can only describe it in words."}]))
        raise AssertionError(kind)

    async def _record(self, route: str, request: web.Request) -> None:
        await super()._record(route, request)
        self.requests.clear()  # keep nothing: the memory figures are the bot's

    async def _scripted(self, route: str, request: web.Request,
                        default: UpReply) -> web.StreamResponse:
        kind = self.rng.choices(self._kinds, self._weights)[0]
        self.counts[kind] += 1
        return await super()._scripted(route, request, self.reply(kind))


def provider_section(upstream: FakeUpstream) -> ProviderSection:
    """Gemini on the fake, with quick retries so the run stays short."""
    return ProviderSection(api="gemini", base_url=upstream.url, api_key_env="CHAOS_KEY",
                           max_retries=2, retry_cap_seconds=0.05)


def rss_mb() -> float:
    """Resident set size now, MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 1e6


def catalog_texts() -> dict[str, str]:
    """The English catalog's error messages, to recognise answers (placeholders cut off)."""
    messages = Messages()
    out = {}
    for key in CLEAR | {"error.no_image_text", "error.refused_reason"}:
        text = messages.t("en", key, retry_after=0, seconds=0, reason="", text="")
        out[key] = text.split("0")[0].split("“")[0][:30]
    return out


class Tally:
    """How the jobs ended."""

    def __init__(self) -> None:
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.delivered = 0
        self.undeliverable = 0
        self.bad: list[tuple[str, str]] = []


async def run_user(core: Core, user: int, jobs: int, tally: Tally, rng: random.Random,
                   offset: int) -> None:
    """One user sends ``jobs`` prompts one after the other; results are 'delivered' or not."""
    actor = Actor("telegram", str(user), f"u{user}", "en")
    chat = ChatRef("telegram", str(user), "private")
    service = Jobs(core)
    for n in range(jobs):
        reply: Reply = await service.imagine(ImageRequest(actor=actor, chat=chat,
                                                          prompt=f"chaos {user} {offset + n}"))
        if reply.images:
            assert reply.turn_id is not None
            tally.outcomes["result"] += 1
            if rng.random() < 0.1:  # the platform refused the upload
                await service.undeliverable(reply.turn_id)
                tally.undeliverable += 1
            else:
                await service.bind(reply.turn_id, [MessageRef("telegram", str(user),
                                                              f"{offset + n}")])
                tally.delivered += 1
            continue
        tally.outcomes[reply.error or "none"] += 1
        lowered = reply.text.lower()
        if (reply.error not in CLEAR or not reply.text or "traceback" in lowered
                or "http" in lowered or "exception" in lowered or KEY in reply.text):
            tally.bad.append((reply.error or "", reply.text))


async def round_of(core: Core, users: range, jobs: int, seed: int) -> Tally:
    """Every user's jobs, all users at once."""
    tally = Tally()
    rng = random.Random(seed)
    await asyncio.gather(*(run_user(core, u, jobs, tally, random.Random(rng.random()), seed * 1000)
                           for u in users))
    return tally


def check_credits(core: Core, db: Path, tally: Tally, earlier: int) -> None:
    """Ledger sums equal what settled; refunds net zero; nothing is left in flight."""
    states = check_books(db)
    assert states.get("settled", 0) == tally.delivered + earlier
    settled = query(db, "SELECT COALESCE(SUM(credits), 0), COALESCE(SUM(bonus), 0),"
                        " COALESCE(SUM(usd), 0) FROM reservations WHERE state = 'settled'")[0]
    ledger = query(db, "SELECT SUM(credits), SUM(bonus), SUM(usd) FROM ledger"
                       " WHERE kind != 'grant'")[0]
    assert (ledger[0], -ledger[1], round(ledger[2], 6)) == (settled[0], settled[1],
                                                             round(settled[2], 6))
    snap = core.scheduler.snapshot()
    assert (snap.queued, snap.running, snap.by_owner) == (0, 0, {})
    assert not core.service.deliveries.local and not core.service._busy


async def test_500_chaotic_jobs_from_50_users(settings_factory: Factory,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = ChaosUpstream(seed=7, too_slow=3.0)
    await upstream.start()
    monkeypatch.setenv("CHAOS_KEY", KEY)
    settings = settings_factory(
        providers={"up": provider_section(upstream).model_dump(exclude_none=True)},
        limits={"global_concurrency": 16, "timeout_seconds": 1.5},
        quota={"global_daily_usd": 1000.0, "user_daily_credits": 1000,
               "user_monthly_credits": 10000})
    core = build_core(settings)
    await core.start()
    db = settings.bot.data_dir / "imagine.sqlite3"
    try:
        started = time.monotonic()
        warm = await round_of(core, range(100, 150), 2, seed=1)  # 100 jobs
        assert not warm.bad, warm.bad[:5]
        gc.collect()
        rss_before = rss_mb()
        tracemalloc.start(1)
        traced_before = tracemalloc.get_traced_memory()[0]
        t0 = time.monotonic()
        tally = await round_of(core, range(1, 51), 10, seed=2)  # 500 jobs
        elapsed = time.monotonic() - t0
        gc.collect()
        traced_after = tracemalloc.get_traced_memory()[0]
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        rss_after = rss_mb()
        held = (traced_after - traced_before) / 1e6
        top = snapshot.statistics("lineno")[:5]
        print(f"\nchaos: 500 jobs in {elapsed:.1f} s (warm-up + run {time.monotonic() - started:.1f}"
              f" s); upstream answers {dict(upstream.counts)}")
        print(f"chaos: outcomes {dict(tally.outcomes)}; delivered {tally.delivered}, "
              f"undeliverable {tally.undeliverable}")
        print(f"chaos: RSS {rss_before:.1f} -> {rss_after:.1f} MB "
              f"({rss_after - rss_before:+.1f}); tracemalloc still holds {held:.2f} MB "
              f"allocated during the run; top: {[str(s) for s in top[:3]]}")
        assert not tally.bad, tally.bad[:5]
        assert sum(tally.outcomes.values()) == 500
        assert tally.outcomes["result"] >= 150 and len(tally.outcomes) >= 4, tally.outcomes
        assert {"reset", "html", "html_200", "truncated", "500", "503", "429"} <= set(
            upstream.counts)
        assert tally.outcomes["error.upstream"] > 0  # the HTML "success" is not retried
        check_credits(core, db, tally, earlier=warm.delivered)
        assert held < 8.0, f"{held:.1f} MB allocated during the run is still held"
        assert rss_after - rss_before < 60.0
    finally:
        await core.stop(grace=0)
        await upstream.stop()


async def test_chaos_through_the_telegram_adapter(settings_factory: Factory) -> None:
    upstream = ChaosUpstream(seed=11, too_slow=2.0)
    await upstream.start()
    provider = build_provider("up", provider_section(upstream), api_key=KEY)
    users = [FakeUser(8000 + i, f"Chaos{i}") for i in range(10)]
    texts = catalog_texts()
    try:
        async with running_bot(settings_factory, providers={"demo": provider},
                               limits={"global_concurrency": 4, "timeout_seconds": 1.0}) as bot:
            fake = bot.fake

            async def user_round(user: FakeUser) -> list[str]:
                seen = []
                for n in range(3):
                    fake.user_sends(f"/imagine chaos via telegram {n}", user=user)
                    seen.append(await first_answer(fake, user.id))
                return seen

            answers = await asyncio.gather(*(user_round(u) for u in users))
        flat = [a for per_user in answers for a in per_user]
        assert len(flat) == 30
        kinds = collections.Counter(a.split(":")[0] for a in flat)
        print(f"\nchaos via telegram: {dict(kinds)}; upstream {dict(upstream.counts)}")
        unknown = [a for a in flat if a != "photo" and not any(
            a.removeprefix("text:").startswith(t) for t in texts.values())]
        assert not unknown, unknown
        assert kinds["photo"] >= 5
    finally:
        await upstream.stop()


async def first_answer(fake: Any, chat_id: int, timeout: float = 15.0) -> str:  # noqa: ASYNC109
    """The next photo or text message to ``chat_id``: ``photo`` or ``text:...``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for index, call in enumerate(fake.calls):
            if index in fake._consumed or not call.ok or call.chat_id != chat_id:
                continue
            if call.method == "sendPhoto":
                fake._consumed.add(index)
                return "photo"
            if call.method == "sendMessage" and not call.text.startswith(("🎨", "⏳")):
                fake._consumed.add(index)
                return f"text:{call.text}"
        await asyncio.sleep(0.02)
    raise AssertionError(f"no answer to chat {chat_id} within {timeout} s")


class CountingUpstream(FakeUpstream):
    """Answers every call after ``delay`` s and counts how many it holds at once."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay, self.now, self.peak = delay, 0, 0

    async def _scripted(self, route: str, request: web.Request,
                        default: UpReply) -> web.StreamResponse:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            default.delay = self.delay
            return await super()._scripted(route, request, default)
        finally:
            self.now -= 1


async def test_upstream_calls_are_bounded_by_global_concurrency_only(
        settings_factory: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """150 jobs at once with ``global_concurrency = 150`` are 150 upstream calls at once.

    (A provider's HTTP client with a pool of its own smaller than that, such as httpx's default
    of 100 connections, makes the rest wait unseen, their time counted as the model's.)
    """
    upstream = CountingUpstream(delay=1.5)
    await upstream.start()
    monkeypatch.setenv("CHAOS_KEY", KEY)
    settings = settings_factory(
        providers={"up": provider_section(upstream).model_dump(exclude_none=True)},
        limits={"global_concurrency": 150, "queue_size": 300},
        quota={"global_daily_usd": 1000.0})
    core = build_core(settings)
    await core.start()
    try:
        replies = await asyncio.gather(*(Jobs(core).imagine(ImageRequest(
            actor=Actor("telegram", str(9000 + i)), chat=ChatRef("telegram", str(9000 + i)),
            prompt=f"crowd {i}")) for i in range(150)))
        assert all(r.images for r in replies), {r.error for r in replies}
        assert upstream.peak == 150, f"only {upstream.peak} upstream calls were in flight at once"
    finally:
        await core.stop(grace=0)
        await upstream.stop()
