"""Benchmark: first feedback on Telegram, a draft in private chats against a status message in groups.

The bot runs as in production (``python -m adapters.cli run``, long polling) against the Bot API
fake of ``tests/`` and a Gemini upstream answering with a real 1K PNG after a fixed delay (the
fakes of ``bench/e2e_fakes.py``); this process hosts the Bot API fake and plays the users, the
upstream serves from a process of its own (``bench/e2e_upstream.py``). Three ways of
showing progress are compared on the same load, each scenario in a fresh bot process after an
uncounted warm-up of its own:

- ``private``: private chats, progress as a native draft (``sendMessageDraft``, the default);
- ``group``: one group per user, progress as one status message (sent, edited, deleted);
- ``nodrafts``: private chats with ``[telegram] drafts = false``: the status message of groups.

First feedback is what the user sees first, timed from the update being handed to the bot (the
fake's ``getUpdates`` answer that carried it) to the feedback call being answered by the fake:
the draft ("Thinking...") in a private chat, the status message elsewhere. The chat action, the
stand-in the bot sends when neither is out after 0.3 s, is reported apart. Per job also: the
drafts sent (renewed every 25 s of a draft's 30 s life, https://core.telegram.org/bots/api#
sendmessagedraft), whether the draft was still showing when the photo replaced it, the longest
gap between drafts, and the Bot API calls; per scenario the peak draft calls in any one second,
the fake's 429s, and the bot's peak RSS (from /proc).

Loads: one user at a time (each job a new chat, so one chat's limits never bind: the unloaded
figure), N users at once sending ``rounds`` jobs each at a steady 12 jobs/s (a group job costs
two messages, and Telegram allows about 30 a second in all), their first jobs spread over one
upstream delay, each looking at a result for 2 s before the next prompt; and bursts, every
user at once. With 500 users the upstream takes over 40 s, so
drafts are renewed. A p99 is printed only from 100 samples, else the max of N.

Whether drafts count against Telegram's sending limits the Bot API page does not say, nor does
the Bots FAQ (its limits are for messages); in MTProto a draft is a typing action
(https://corefork.telegram.org/api/bots/ai), and the fake meters messages only
(tests/telegram_flood.py). Bots streaming text through drafts many times a second report flood
waits on them (https://github.com/lsdefine/GenericAgent/pull/214,
https://github.com/NousResearch/hermes-agent/issues/54275), with no numbers. ``--meter-drafts``
counts every draft as a message against the fake's global and per-chat limits: what would happen
if Telegram did.

Run: ``.venv/bin/python bench/bench_feedback.py [--quick] [--modes private,group,nodrafts]
[--meter-drafts]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.e2e_bot import Bot, proc_mem  # noqa: E402
from bench.e2e_fakes import TG_TOKEN  # noqa: E402
from bench.e2e_upstream import RemoteUpstream  # noqa: E402
from tests.fake_telegram import Call, FakeTelegram, FakeUser  # noqa: E402
from tests.telegram_flood import DRAFT_LIFETIME, Bucket  # noqa: E402

#: Offered load when users run at once: a group job is two messages, Telegram allows ~30/s.
JOBS_PER_SECOND = 12.0
BURST_DELAY = 2.0
SEQUENTIAL_DELAY = 0.5
#: A user looks at a result this long before sending the next prompt.
THINK = 2.0


@dataclass
class Track:
    """One job as its chat shows it."""

    sent: float
    delivered: float | None = None
    drafts: list[float] = field(default_factory=list)
    actions: list[float] = field(default_factory=list)
    status: float | None = None
    photo: float | None = None
    deleted: float | None = None
    error: str = ""
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def visible(self) -> float | None:
        """The first draft or status message: the feedback the user reads."""
        shown = [t for t in (*self.drafts[:1], self.status) if t is not None]
        return min(shown) if shown else None


class FeedbackTelegram(FakeTelegram):
    """The Bot API fake keeping no files or call list, timing each chat's current job."""

    def __init__(self, meter_drafts: bool) -> None:
        super().__init__(token=TG_TOKEN)
        self.meter_drafts = meter_drafts
        self.jobs: dict[int, Track] = {}
        self.methods: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()
        self.draft_times: list[float] = []

    def _register_file(self, data: bytes, folder: str, ext: str) -> str:
        return super()._register_file(b"", folder, ext)

    def _flood_check(self, method: str, params: dict[str, Any]) -> list[Bucket]:
        metered = "sendMessage" if self.meter_drafts and method == "sendMessageDraft" else method
        return super()._flood_check(metered, params)

    def _record(self, call: Call) -> None:
        self._changed.set()
        if not call.ok:
            self.refused[call.method] += 1
            return
        self.methods[call.method] += 1
        if call.method == "getUpdates":
            for update in call.result:
                track = self.jobs.get((update.get("message") or {}).get("chat", {}).get("id"))
                if track is not None and track.delivered is None:
                    track.delivered = call.at
            return
        if call.method == "sendMessageDraft":
            self.draft_times.append(call.at)
        track = self.jobs.get(call.chat_id or 0)
        if track is None:
            return
        track.calls[call.method] += 1
        if call.method == "sendMessageDraft":
            track.drafts.append(call.at)
        elif call.method == "sendChatAction":
            track.actions.append(call.at)
        elif call.method == "sendMessage":
            if track.status is None and track.photo is None and call.params.get(
                    "disable_notification"):
                track.status = call.at
            else:
                track.error = call.text
        elif call.method == "deleteMessage":
            track.deleted = call.at
            track.gone.set()
        elif call.method == "sendPhoto":
            track.photo = call.at
        if track.photo is not None or track.error:
            track.done.set()

    def reset(self) -> None:
        """Forget the last scenario: its messages, confirmed updates, counters and limits."""
        self.messages.clear()
        self._updates = [u for u in self._updates if u["update_id"] > self._confirmed]
        self.methods.clear()
        self.refused.clear()
        self.draft_times.clear()
        self.jobs.clear()
        if self.flood is not None:
            self.flood.refused.clear()


# ----- users ------------------------------------------------------------------------------------

class Ids:
    """Fresh user and group ids for every job that needs a new chat."""

    def __init__(self) -> None:
        self._next = 20_000

    def take(self) -> int:
        """A new positive id."""
        self._next += 1
        return self._next


async def one_job(tg: FeedbackTelegram, mode: str, user: FakeUser, chat: dict[str, Any],
                  n: int) -> Track:
    """``user`` sends /imagine in ``chat`` and waits for the photo (or an error)."""
    track = Track(sent=time.monotonic())
    tg.jobs[chat["id"]] = track
    tg.user_sends(f"/imagine a lighthouse at dawn job{user.id}x{n}", user=user, chat=chat)
    await asyncio.wait_for(track.done.wait(), 600)
    await asyncio.sleep(0)
    return track


def chat_for(tg: FeedbackTelegram, mode: str, user: FakeUser) -> dict[str, Any]:
    """The user's private chat, or a group of its own."""
    if mode == "group":
        return tg.group(-1_000_000_000_000 - user.id, f"Group {user.id}")
    return tg.private(user)


async def user_loop(tg: FeedbackTelegram, mode: str, ids: Ids, rounds: int, start_in: float,
                    tracks: list[Track]) -> None:
    """One user (in one chat) sending ``rounds`` jobs one after the other."""
    user = FakeUser(ids.take(), "Bench")
    chat = chat_for(tg, mode, user)
    await asyncio.sleep(start_in)
    for n in range(rounds):
        if n:
            await asyncio.sleep(THINK)
        track = await one_job(tg, mode, user, chat, n)
        tracks.append(track)
        if track.status is not None:  # its deletion follows the photo (later under load)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(track.gone.wait(), 30)
    tg.jobs.pop(chat["id"], None)


async def run_load(tg: FeedbackTelegram, mode: str, ids: Ids, kind: str, users: int,
                   rounds: int) -> list[Track]:
    """Every job of one load."""
    tracks: list[Track] = []
    if kind == "seq":  # one at a time, each in a new chat
        for _ in range(rounds):
            await user_loop(tg, mode, ids, 1, 0.0, tracks)
        return tracks
    delay = BURST_DELAY if kind == "burst" else max(BURST_DELAY, users / JOBS_PER_SECOND)
    rng = random.Random(users)
    await asyncio.gather(*(user_loop(tg, mode, ids, rounds, 0.0 if kind == "burst" else
                                     rng.uniform(0, delay), tracks) for _ in range(users)))
    return tracks


def delay_of(kind: str, users: int) -> float:
    """The upstream delay of a load."""
    if kind == "seq":
        return SEQUENTIAL_DELAY
    return BURST_DELAY if kind == "burst" else max(BURST_DELAY, users / JOBS_PER_SECOND)


# ----- figures ----------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] if ordered else 0.0


def spread(values: list[float], scale: float = 1000.0) -> str:
    """Median and p99 (from 100 samples; else the max of N), in ms."""
    if not values:
        return "none"
    tail = (f"p99 {pct(values, 0.99) * scale:.0f}" if len(values) >= 100
            else f"max of {len(values)} {max(values) * scale:.0f}")
    return f"p50 {pct(values, 0.5) * scale:.0f} {tail} ms"


def peak_per_second(times: list[float]) -> int:
    """The most calls in any one-second window."""
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def report(tg: FeedbackTelegram, mode: str, kind: str, users: int, tracks: list[Track],
           delay: float, rss: float) -> None:
    """A few lines per scenario."""
    done = [t for t in tracks if t.delivered is not None and t.photo is not None]
    visible = [t.visible - t.delivered for t in done if t.visible is not None]  # type: ignore[operator]
    late = [t for t in done if t.visible is None or t.visible > t.photo]  # type: ignore[operator]
    action = [t.actions[0] - t.delivered for t in done if t.actions]  # type: ignore[operator]
    polled = [t.delivered - t.sent for t in done]  # type: ignore[operator]
    result = [t.photo - t.delivered - delay for t in done]  # type: ignore[operator]
    label = {"seq": "1 user at a time", "users": f"{users} users", "burst": f"burst of {users}"}
    print(f"{mode:8} {label[kind]:17} jobs {len(tracks):4} err "
          f"{sum(1 for t in tracks if t.error):3}  first feedback {spread(visible)}"
          f"  (message to update {spread(polled)})", flush=True)
    calls = collections.Counter[str]()
    for t in tracks:
        calls.update(t.calls)
    per_job = ", ".join(f"{m} {n / max(1, len(tracks)):.2f}" for m, n in calls.most_common())
    print(f"{'':8} calls per job {sum(calls.values()) / max(1, len(tracks)):.2f} ({per_job});"
          f" 429s {dict(tg.refused) or 0}; bot peak RSS {rss:.0f} MB")
    extra = [f"no draft or status before the photo: {len(late)}"]
    if action:
        extra.append(f"chat action in {len(action)} jobs, {spread(action)}")
    if any(t.drafts for t in done):
        drafted = [t for t in done if t.drafts]
        live = sum(1 for t in drafted if t.photo - t.drafts[-1] <= DRAFT_LIFETIME)  # type: ignore[operator]
        gaps = [b - a for t in drafted for a, b in zip(t.drafts, [*t.drafts[1:], t.photo],
                                                       strict=True)]
        extra.append(f"drafts per job {sum(len(t.drafts) for t in drafted) / len(drafted):.2f}, "
                     f"longest gap {max(gaps):.1f} s, still showing when the photo came "
                     f"{live}/{len(drafted)}, peak {peak_per_second(tg.draft_times)} drafts/s")
    statused = [t for t in done if t.status is not None and t.deleted is not None]
    if statused:
        gone = [t.deleted - t.photo for t in statused]  # type: ignore[operator]
        extra.append(f"status deleted after the photo {spread(gone)}")
    extra.append(f"result (minus the {delay:.1f} s upstream) {spread(result)}")
    print(f"{'':8} " + "; ".join(extra), flush=True)


# ----- the runs ---------------------------------------------------------------------------------

PLANS = {
    "full": [("seq", 1, 100), ("users", 100, 2), ("users", 500, 1), ("burst", 100, 1),
             ("burst", 500, 1)],
    "quick": [("seq", 1, 100), ("users", 100, 1), ("burst", 100, 1)],
}


async def fresh_bot(tg: FeedbackTelegram, upstream: RemoteUpstream, workdir: Path, mode: str,
                    users: int, spy: Path | None = None) -> Bot:
    """A bot process of its own: Telegram only, drafts switched off in ``nodrafts``."""
    no_discord = SimpleNamespace(api_url="http://127.0.0.1:9/api", gateway_url="ws://127.0.0.1:9")
    bot = Bot(workdir, tg, no_discord, upstream.url, users=max(users, 4),  # type: ignore[arg-type]
              spy=spy)
    config = bot.config.read_text().replace("[discord]\nenabled = true",
                                            "[discord]\nenabled = false")
    drafts = "false" if mode == "nodrafts" else "true"
    bot.config.write_text(config.replace("[telegram]\nenabled = true",
                                         f"[telegram]\nenabled = true\ndrafts = {drafts}"))
    await bot.start()
    return bot


async def scenario(tg: FeedbackTelegram, upstream: RemoteUpstream, ids: Ids, mode: str,
                   kind: str, users: int, rounds: int, args: argparse.Namespace) -> None:
    """One load in a fresh bot process, after a warm-up in it."""
    with tempfile.TemporaryDirectory(prefix="bench-feedback-") as tmp:
        spy = args.spy and args.spy.with_suffix(f".{mode}-{kind}-{users}.txt")
        bot = await fresh_bot(tg, upstream, Path(tmp), mode, users, spy)
        try:
            await upstream.set_delay(0.3)
            await run_load(tg, mode, ids, "users", 2, 2)  # warm-up, not counted
            await asyncio.sleep(1.0)
            tg.reset()
            delay = delay_of(kind, users)
            await upstream.set_delay(delay)
            tracks = await run_load(tg, mode, ids, kind, users, rounds)
            await asyncio.sleep(1.0)
            report(tg, mode, kind, users, tracks, delay, proc_mem(bot.pid)[1])
        finally:
            await bot.stop()
            tg.reset()
            if args.log is not None:
                with args.log.open("ab") as out:
                    out.write(bot.log.read_bytes())


async def main(args: argparse.Namespace) -> None:
    """Start the fakes; run every load for every mode."""
    tg = FeedbackTelegram(args.meter_drafts)
    upstream = RemoteUpstream(["1K"])  # a process of its own, as Google is (bench/e2e_upstream.py)
    await tg.start()
    await upstream.start()
    ids = Ids()
    print(f"modes {','.join(args.modes)}; drafts metered: {args.meter_drafts}", flush=True)
    try:
        for kind, users, rounds in PLANS["quick" if args.quick else "full"]:
            if (args.users and users not in args.users) or kind not in args.kinds:
                continue
            for mode in args.modes:
                await scenario(tg, upstream, ids, mode, kind, users, rounds, args)
    finally:
        await upstream.stop()
        await tg.stop()


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100-user loads only")
    parser.add_argument("--modes", default="private,group,nodrafts",
                        type=lambda s: [m for m in s.split(",") if m])
    parser.add_argument("--users", type=lambda s: [int(u) for u in s.split(",")],
                        help="only the loads of these user counts (1, 100, 500)")
    parser.add_argument("--kinds", default="seq,users,burst", type=lambda s: s.split(","),
                        help="only these loads: seq (1 user at a time), users, burst")
    parser.add_argument("--log", type=Path, help="append the bot's log here")
    parser.add_argument("--spy", type=Path, help="run the bot under py-spy (bench/spy_top.py)")
    parser.add_argument("--meter-drafts", action="store_true",
                        help="the fake counts drafts against the sending limits like messages")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
