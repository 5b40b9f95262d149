"""A rolling restart of one of two ``imagine-bot run`` processes (SIGTERM, as a deploy sends):
the jobs it had waiting in a group are told they are handed over, keep their status messages,
and the other process makes them at once (the stopping one gave its lease up), editing those
status messages and answering the same messages; nothing is made twice or charged twice."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from pathlib import Path

import pytest

from tests.fake_telegram import FakeTelegram, FakeUser
from tests.scale_world import cluster
from tests.test_ops_crash import SlowUpstream

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

HANDED_OVER = "The bot is restarting: another instance will make your image"


async def test_a_restarting_process_hands_its_waiting_jobs_over(tmp_path: Path) -> None:
    telegram, upstream = FakeTelegram(), SlowUpstream()
    upstream.delay = 1.5
    await telegram.start()
    await upstream.start()
    try:
        async with cluster(tmp_path, count=2, telegram=telegram, discord=None,
                           upstream_url=upstream.url, limits={"global_concurrency": 1},
                           store={"lease_seconds": 30.0}) as world:
            group = telegram.group()
            users = [FakeUser(8000 + i, f"G{i}") for i in range(6)]
            asked = [telegram.user_sends(f"/imagine crane {i}", user=u, chat=group)
                     for i, u in enumerate(users)]

            async def tickets() -> list[dict[str, object]]:
                rows = await world.query("SELECT h.target, i.pid FROM handoffs h"
                                         " JOIN instances i ON i.id = h.owner")
                return [{**json.loads(r["target"]), "pid": r["pid"]} for r in rows]

            deadline = time.monotonic() + 30
            while len(await tickets()) < 4 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            waiting = await tickets()
            by_pid = collections.Counter(t["pid"] for t in waiting)
            pid = by_pid.most_common(1)[0][0]
            victim = next(p for p in world.procs if p.proc is not None and p.proc.pid == pid)
            mine = [t for t in waiting if t["pid"] == pid]
            assert mine
            stopped_at = time.monotonic()
            victim.kill(15)  # SIGTERM: drain, hand over, give the lease up
            assert await victim.exit_code(30) == 0

            def photo_for(reply_to: object) -> list[object]:
                return [c for c in telegram.calls_of("sendPhoto")
                        if c.chat_id == group["id"] and c.reply_to == reply_to]

            deadline = time.monotonic() + 60
            while (not all(photo_for(t["reply_to"]) for t in mine)  # noqa: ASYNC110
                   and time.monotonic() < deadline):
                await asyncio.sleep(0.1)
            took = time.monotonic() - stopped_at
            told = [c for c in telegram.calls_of("sendMessage")
                    if c.text.startswith(HANDED_OVER)]
            rows = await world.query("SELECT target FROM handoffs")
            assert rows == []  # every ticket made and taken back
            for ticket in mine:
                assert len(photo_for(ticket["reply_to"])) == 1, ticket  # made once, elsewhere
                assert any(c.reply_to == ticket["reply_to"] for c in told), ticket
            # No status message is left behind: those the stopped process showed are edited by
            # the other one and deleted with its results, once.
            await asyncio.sleep(1.0)
            statuses = [c.message["message_id"] for c in telegram.calls_of("sendMessage")
                        if c.chat_id == group["id"] and not c.text.startswith(HANDED_OVER)
                        and not c.text.startswith("Cancelled")]
            deleted = collections.Counter(c.params.get("message_id")
                                          for c in telegram.calls_of("deleteMessage"))
            trail = [(c.method, c.params.get("message_id") or (c.result or {}).get("message_id"),
                      c.reply_to, c.text[:30]) for c in telegram.calls
                     if c.method in ("sendMessage", "editMessageText", "deleteMessage")]
            assert statuses and all(deleted[s] == 1 for s in statuses), (statuses, deleted, trail)
            # within a third of a lease, not the lease: it was given up, not left to lapse
            assert took < 30.0, took
            # every job is delivered or was running when the restart cut it short (refunded)
            answered = sum(bool(photo_for(m["message_id"])) for m in asked)
            assert answered >= len(asked) - 1
            held = await world.query("SELECT id FROM reservations WHERE state = 'held'")
            assert held == []
            spent = await world.query("SELECT actor_key, count(*) AS n FROM reservations"
                                      " WHERE state = 'settled' GROUP BY actor_key")
            assert all(int(r["n"]) == 1 for r in spent), spent  # nobody paid twice
    finally:
        await upstream.stop()
        await telegram.stop()
