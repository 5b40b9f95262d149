"""Benchmark (e2e): /imagine through the real adapters, end to end, against loopback fakes.

The bot runs as it does in production, ``python -m adapters.cli run`` in its own process, with Telegram
(python-telegram-bot, long polling) and Discord (discord.py, gateway + REST) enabled. This
process hosts the Telegram Bot API and Discord fakes from ``tests/`` and plays the users; a
Gemini upstream answering every ``generateContent`` after a fixed delay with a real PNG (1K: a
1024x1024 image of about 1.5 MB; 4K: a 5504x3072 image of about 20 MB) runs in a process of its
own (bench/e2e_upstream.py: in this one, writing a burst's answers held up the Bot API fake's
reading of the photos uploaded meanwhile, which then arrived bunched).

N users each send /imagine, wait for the result, and send the next one; their first messages
are spread over one upstream delay so arrivals are steady. The delay grows with N so that the
offered load stays one a real deployment can meet: 1K at most 25 jobs/s (Telegram lets a bot
send about 30 messages a second in all), 4K at most 3 jobs/s (about what 2 cores can decode,
fit and re-encode); ``--delay`` fixes it instead. Per job:

- added latency: from the user's message to the result being in the chat (Telegram: the photo,
  and for 4K also the original as a file; Discord: the edit carrying the image), minus the
  upstream delay: what the bot itself adds (queueing, decoding, storing, fitting, uploading);
- first feedback: from the message to the first sign of life (Telegram: the draft in a private
  chat, else the chat action or status message; Discord: the interaction's deferral);
- from the image being ready (the upstream's answer written out) to its delivery, against
  Telegram's free rate: a result that found k results ready and not yet sent should arrive
  within 1.2 k / 30 s (plus what one result takes alone, the 1-user figure);

and per scenario the platform calls per job, results per second against the platform's bound
(Telegram: 30 messages/s, enforced by the fake with 429s as Telegram does), the bot process's
peak RSS and CPU seconds per job (from /proc). Every scenario runs in a fresh bot process after
a warm-up of its own (excluded from the figures); the first job after start is reported apart.
A p99 is printed only from 100 samples up, else the max of N. Neither this process (the fakes)
nor the upstream's collects garbage while a scenario is timed: they stand in for servers that do
not pause for it; the bot collects as it does in production. Clocks are ``time.monotonic`` on
both sides: the Bot API fake stamps a call when it has answered it.

Run: ``.venv/bin/python bench/bench_e2e.py [--quick]``. Prints figures; asserts nothing.
``--spy FILE`` runs the bot under py-spy (every thread, GIL holders only; ``pip install
py-spy`` into .venv) and ``bench/spy_top.py FILE`` lists where the GIL went.
Targets on a 2-core machine: added latency median <= 50 ms at 1K and <= 700 ms at 4K, first
feedback p99 <= 150 ms at 500 users; at 500 1K users, Telegram's k-th result within 1.2 k / 30 s
of its image and at most 2 calls per job (private chats), Discord's added latency median under
300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.e2e_bot import Bot, proc_cpu, proc_mem, self_cpu  # noqa: E402
from bench.e2e_fakes import (  # noqa: E402
    BenchDiscord,
    BenchTelegram,
    Job,
)
from bench.e2e_upstream import RemoteUpstream  # noqa: E402
from tests.fake_discord import FakeUser as DiscordUser  # noqa: E402
from tests.fake_telegram import FakeUser  # noqa: E402

# ----- scenarios ----------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] if ordered else 0.0


@dataclass
class World:
    """The fakes and the bot."""

    telegram: BenchTelegram
    discord: BenchDiscord
    upstream: RemoteUpstream
    bot: Bot
    user_ids: Callable[[], int]


async def telegram_user(w: World, size: str, rounds: int, start_in: float,
                        jobs: list[Job]) -> None:
    """One Telegram user sending ``rounds`` prompts, one after the other."""
    user = FakeUser(w.user_ids(), "Bench")
    await asyncio.sleep(start_in)
    flags = "--model nano-banana-pro --size 4K --ar 16:9" if size == "4K" else ""
    for n in range(rounds):
        job = Job(sent=time.monotonic(), want_document=size == "4K", marker=f"job{user.id}x{n}")
        w.telegram.current[user.id] = job
        w.telegram.user_sends(f"/imagine a lighthouse at dawn {job.marker} {flags}", user=user)
        job.sent = time.monotonic()
        await asyncio.wait_for(job.done.wait(), 900)
        jobs.append(job)
    w.telegram.current.pop(user.id, None)


async def discord_user(w: World, size: str, rounds: int, start_in: float,
                       jobs: list[Job]) -> None:
    """One Discord user running /imagine ``rounds`` times, one after the other."""
    user = DiscordUser(w.user_ids(), "bench")
    await asyncio.sleep(start_in)
    options = {"model": "nano-banana-pro", "size": "4K"} if size == "4K" else {}
    for n in range(rounds):
        fake = w.discord
        ix = fake._new_interaction(2, {"id": fake._command_id("imagine"), "name": "imagine",
                                       "type": 1, "options": [
                                           {"name": "prompt", "type": 3,
                                            "value": f"a lighthouse at dawn job{user.id}x{n}"},
                                           *({"name": k, "type": 3, "value": v}
                                             for k, v in options.items())]}, user, None)
        job = Job(sent=time.monotonic(), marker=f"job{user.id}x{n}")
        fake.current[ix.id] = job
        await fake._send_interaction(ix, "en-US")
        job.sent = ix.created
        await asyncio.wait_for(job.done.wait(), 900)
        jobs.append(job)
        fake.current.pop(ix.id, None)


def delay_for(size: str, users: int) -> float:
    """The upstream delay that keeps the offered load sustainable (see the module docstring)."""
    return max(1.0, users / (3.0 if size == "4K" else 25.0))


async def settle(w: World, limit: float = 60.0) -> None:
    """Until the bot has made no platform call (status deletions trickle out) for a second."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = sum(n for m, n in w.telegram.methods.items() if m != "getUpdates")
        before += sum(w.discord.kinds.values())
        await asyncio.sleep(1.0)
        after = sum(n for m, n in w.telegram.methods.items() if m != "getUpdates")
        if after + sum(w.discord.kinds.values()) == before:
            break


async def quiet(w: World, limit: float = 60.0) -> None:
    """:func:`settle`, then count from zero."""
    await settle(w, limit)
    w.telegram.methods.clear()
    w.discord.kinds.clear()
    if w.telegram.flood is not None:
        w.telegram.flood.refused.clear()


def tail(values: list[float], scale: float = 1000.0) -> str:
    """p99 from 100 samples up; below that the max of what there is (a p99 of 20 means nothing)."""
    if len(values) >= 100:
        return f"p99 {pct(values, 0.99) * scale:6.0f}"
    return f"max of {len(values)} {max(values, default=0.0) * scale:6.0f}"


#: Results ready and waiting for a delivery to count towards the rate "while queued".
QUEUED = 10


def backlog(jobs: list[Job], rate: float, alone: float) -> tuple[float, float, float]:
    """Each result against Telegram's free ``rate``: (share within bound, worst ratio, results/s).

    A result whose image was ready when k results (itself included) were ready and not yet sent
    is within bound when it arrived no later than 1.2 k / rate after its image, plus ``alone``
    (what one result takes by itself: decoding, fitting, uploading). The worst ratio is the
    largest (lag - alone) / (k / rate); results/s is the delivery rate while QUEUED+ waited.
    """
    done = sorted((j.ready, j.finished) for j in jobs if j.ready and j.finished)
    within, worst = 0, 0.0
    for ready, delivered in done:
        k = sum(1 for r, d in done if r <= ready <= d)
        within += delivered - ready <= 1.2 * k / rate + alone
        worst = max(worst, (delivered - ready - alone) / (k / rate))
    # The delivery rate while results queued: over each stretch of at least a second in which
    # QUEUED or more results were ready and waiting at every delivery (so the platform's pace
    # set the gaps, not the arrivals; a shorter stretch is the budget's burst, over the bound).
    count, busy, stretch = 0, 0.0, list[float]()
    for at in [*sorted(d for _, d in done), math.inf]:
        if at < math.inf and sum(1 for r, d in done if r <= at < d) >= QUEUED - 1:
            stretch.append(at)  # QUEUED were waiting when it went: this one and the others
            continue
        if len(stretch) > 1 and stretch[-1] - stretch[0] >= 1.0:
            count, busy = count + len(stretch) - 1, busy + stretch[-1] - stretch[0]
        stretch = []
    return within / max(1, len(done)), worst, count / busy if busy else 0.0


@contextlib.contextmanager
def no_collections() -> Iterator[None]:
    """No cyclic collection in this process while a scenario is timed; one before and after.

    The fakes stand in for Telegram's and Discord's servers, which do not stop for this
    process's collections: a full one stopped the Bot API fake for 30-76 ms (gc callbacks),
    stamping the results it was reading meanwhile as late as that. The bot collects as usual.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


async def scenario(w: World, platform: str, size: str, users: int, rounds: int,
                   delay: float, burst: bool = False) -> dict[str, Any]:
    """``users`` users at once, ``rounds`` jobs each; figures for the whole scenario."""
    jobs: list[Job] = []
    await quiet(w)
    await w.upstream.set_delay(delay)
    await w.upstream.reset()
    pid = w.bot.pid
    cpu0, mine0 = proc_cpu(pid), self_cpu() + w.upstream.cpu()
    rss_start = rss_peak = proc_mem(pid)[0]
    sampling = True

    async def sample() -> None:
        nonlocal rss_peak
        while sampling:
            rss_peak = max(rss_peak, proc_mem(pid)[0])
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    user = telegram_user if platform == "telegram" else discord_user
    rng = random.Random(users)
    started = time.monotonic()
    await asyncio.gather(*(user(w, size, rounds, 0.0 if users == 1 or burst else
                                rng.uniform(0, delay), jobs) for _ in range(users)))
    wall = time.monotonic() - started
    await settle(w, 10.0)  # the status deletions belong to these jobs
    sampling = False
    await sampler
    cpu = proc_cpu(pid) - cpu0
    w.telegram.trim()
    ready = await w.upstream.ready()
    for job in jobs:
        job.ready = ready.get(job.marker)
    ok = [j for j in jobs if not j.error]
    calls: dict[str, float] = {}
    if platform == "telegram":
        calls = {m: n / max(1, len(jobs)) for m, n in w.telegram.methods.most_common()
                 if m != "getUpdates"}
    else:
        calls = {k: n / max(1, len(jobs)) for k, n in w.discord.kinds.most_common()}
    refused = dict(w.telegram.flood.refused) if w.telegram.flood and platform == "telegram" else {}
    return {"platform": platform, "size": size, "users": users, "jobs": len(jobs), "delay": delay,
            "burst": burst, "errors": len(jobs) - len(ok),
            "error_texts": sorted({j.error[:60] for j in jobs if j.error})[:3],
            "added": [(j.finished - j.sent) - delay for j in ok],
            "photo": [((j.photo or 0) - j.sent) - delay for j in ok],
            "feedback": [j.feedback - j.sent for j in jobs if j.feedback is not None],
            "lag": [j.finished - j.ready for j in ok if j.ready],
            "ok_jobs": ok, "calls": calls, "refused": refused,
            "cpu_per_job": cpu / max(1, len(jobs)),
            "fakes_cpu_per_job": (self_cpu() + w.upstream.cpu() - mine0) / max(1, len(jobs)),
            "rss_start": rss_start, "rss_peak": rss_peak, "rss_hwm": proc_mem(pid)[1],
            "wall": wall, "throughput": len(jobs) / wall}


def show(r: dict[str, Any], alone: float) -> None:
    """Two or three lines per scenario."""
    added, feedback = r["added"], r["feedback"]
    print(f"{r['platform']:8} {r['size']} {'burst' if r['burst'] else 'users'} {r['users']:4}  "
          f"delay {r['delay']:5.1f} s  jobs {r['jobs']:4} err {r['errors']:3}  added p50 "
          f"{pct(added, 0.5) * 1000:7.0f} ms {tail(added)} ms  first feedback p50 "
          f"{pct(feedback, 0.5) * 1000:5.0f} ms {tail(feedback)} ms", flush=True)
    calls = ", ".join(f"{m} {n:.2f}" for m, n in r["calls"].items())
    print(f"         calls per job {sum(r['calls'].values()):.2f} ({calls})"
          + (f"; 429s {r['refused']}" if r["refused"] else ""))
    line = (f"         cpu/job {r['cpu_per_job'] * 1000:6.1f} ms (fakes "
            f"{r['fakes_cpu_per_job'] * 1000:5.1f})  rss {r['rss_start']:5.0f} -> "
            f"{r['rss_peak']:5.0f} MB (process peak {r['rss_hwm']:5.0f} MB)  "
            f"{r['throughput']:5.1f} jobs/s")
    if r["platform"] == "telegram" and r["lag"]:
        within, worst, rate = backlog(r["ok_jobs"], TELEGRAM_RATE, alone)
        queued = f"{rate:5.1f}/s" if rate else "none"
        line += (f"\n         results {queued} while {QUEUED}+ queued (bound {TELEGRAM_RATE:.0f}/s); "
                 f"{within * 100:5.1f}% within 1.2 k/{TELEGRAM_RATE:.0f} s of their image"
                 f" (+{alone * 1000:.0f} ms alone), worst {worst:4.2f}x; image to chat p50 "
                 f"{pct(r['lag'], 0.5) * 1000:.0f} ms {tail(r['lag'])} ms")
    print(line, flush=True)
    if r["error_texts"]:
        print(f"         errors: {r['error_texts']}")


PLANS = {
    # (size, users, rounds, burst) per mode, for each platform; a burst sends every user's
    # first message at once against a BURST_DELAY upstream instead of spreading them
    "full": [("1K", 1, 100, False), ("1K", 50, 4, False), ("1K", 100, 1, True),
             ("1K", 500, 2, False), ("1K", 500, 1, True), ("4K", 1, 5, False),
             ("4K", 50, 2, False), ("4K", 500, 1, False)],
    "quick": [("1K", 1, 20, False), ("1K", 50, 2, False), ("1K", 100, 1, True),
              ("1K", 500, 1, False), ("4K", 1, 2, False)],
}
#: The burst's upstream delay: long enough that all of them are in flight at once.
BURST_DELAY = 2.0
#: Telegram's free overall rate (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-
#: do-i-avoid-this), which the fake Bot API enforces.
TELEGRAM_RATE = 30.0


@contextlib.asynccontextmanager
async def fresh_bot(w: World, args: argparse.Namespace, tag: str) -> AsyncIterator[Bot]:
    """A new bot process on a new data dir: no memory, queues or caches carried over."""
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        bot = Bot(Path(tmp), w.telegram, w.discord, w.upstream.url, users=max(args.users),
                  profile=args.profile and args.profile.with_suffix(f".{tag}.txt"),
                  spy=args.spy and args.spy.with_suffix(f".{tag}.txt"))
        await bot.start()
        try:
            async with asyncio.timeout(30):
                while not w.discord._sockets:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            w.bot = bot
            yield bot
        finally:
            await bot.stop()
            if args.log:
                with args.log.open("ab") as log:
                    log.write(bot.log.read_bytes())
            w.discord._sockets.clear()


async def main(args: argparse.Namespace) -> None:
    """Start the fakes; run every scenario in a bot process of its own; print figures."""
    upstream = RemoteUpstream(args.sizes)
    served = await upstream.start()
    print("upstream answers (a process of its own): " + ", ".join(
        f"{size} {n / 1e6:.1f} MB JSON" for size, n in served["sizes"].items())
        + f" (made in {served['made']:.1f} s); {os.cpu_count()} CPUs", flush=True)
    telegram, discord = BenchTelegram(), BenchDiscord()
    await telegram.start()
    await discord.start()
    ids = iter(range(10_000, 10_000_000))
    w = World(telegram, discord, upstream, None, functools.partial(next, ids))  # type: ignore[arg-type]
    if args.log:
        args.log.write_bytes(b"")
    alone: dict[tuple[str, str], float] = {}
    try:
        plan = [(p, *step) for p in args.platforms for step in PLANS[
            "quick" if args.quick else "full"]]
        first_seen: set[str] = set()
        for platform, size, users, rounds, burst in plan:
            if size not in args.sizes or users not in args.users or (
                    args.bursts_only and not burst):
                continue
            async with fresh_bot(w, args, f"{platform}-{size}-{users}"):
                if platform not in first_seen:  # the first job after start: built on first use
                    first_seen.add(platform)
                    first = await scenario(w, platform, "1K", 1, 1, 0.5)
                    print(f"{platform:8} first job after start: added "
                          f"{first['added'][0] * 1000:.0f} ms, first feedback "
                          f"{first['feedback'][0] * 1000:.0f} ms", flush=True)
                # Warm-up in this process, at this size: not counted anywhere.
                await scenario(w, platform, size, 2, 2, 0.5)
                delay = args.delay if args.delay is not None else (
                    BURST_DELAY if burst else delay_for(size, users))
                with no_collections():
                    result = await scenario(w, platform, size, users, rounds, delay, burst)
                if users == 1 and result["lag"]:
                    alone[(platform, size)] = pct(result["lag"], 0.5)
                show(result, alone.get((platform, size), 0.0))
    finally:
        await upstream.stop()
        await discord.close()
        await telegram.stop()


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no 4K crowds")
    parser.add_argument("--delay", type=float, help="upstream delay in seconds for every scenario")
    parser.add_argument("--platforms", default="telegram,discord",
                        type=lambda s: [p for p in s.split(",") if p])
    parser.add_argument("--sizes", default="1K,4K", type=lambda s: s.split(","))
    parser.add_argument("--log", type=Path, help="keep the bot's log here")
    parser.add_argument("--bursts-only", action="store_true", help="only the burst scenarios")
    parser.add_argument("--profile", type=Path,
                        help="run the bot under pyinstrument and write its text report here")
    parser.add_argument("--spy", type=Path,
                        help="run the bot under py-spy (GIL holders only) and write raw stacks here")
    parser.add_argument("--users", default="1,50,100,500",
                        type=lambda s: [int(u) for u in s.split(",")])
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
