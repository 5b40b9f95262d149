"""Crash safety of ``imagine-bot run`` as a real process: ``kill -9`` mid-run, and SIGTERM.

The bot runs as a subprocess (``python -m adapters.cli run --config ...``) against the fake Telegram
Bot API and a slow fake Gemini upstream, both served from this test's event loop on loopback.
After a ``kill -9`` with 20 jobs in flight, the restarted process must leave no reservation
held, the database must pass ``PRAGMA integrity_check``, the append-only ledger must have lost
no row, and the bot must answer the next /imagine with a photo. On SIGTERM, running jobs finish
and are delivered within the grace period, queued ones are refunded and told, and the process
exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fake_telegram import FakeTelegram, FakeUser
from tests.fake_upstream import FakeUpstream, Reply

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_KEY = "sk-ops-UPSTREAM-7f3a9c2e5b1d8f40"  # what the fake upstream must never leak
USERS = [FakeUser(5000 + i, f"User{i}") for i in range(40)]

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


class SlowUpstream(FakeUpstream):
    """The fake upstream whose default answers wait ``delay`` seconds (scripted ones as given)."""

    delay = 0.0

    async def _scripted(self, route: str, request: web.Request,
                        default: Reply) -> web.StreamResponse:
        return await super()._scripted(route, request, replace(default, delay=self.delay))


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def toml_value(value: Any) -> str:
    """A Python value as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """``sections`` as a TOML file (tables may be dotted, e.g. ``providers.up``)."""
    lines = []
    for table, values in sections.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def bot_sections(data_dir: Path, telegram: FakeTelegram, upstream_url: str, *, http_port: int,
                 log_format: str = "json", api: str = "gemini", key_env: str = "OPS_UPSTREAM_KEY",
                 token_env: str = "TELEGRAM_BOT_TOKEN",
                 **overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A config for the bot process: Telegram on the fake, one upstream provider, /readyz."""
    base_url = f"{upstream_url}/v1" if api != "gemini" else upstream_url
    sections: dict[str, dict[str, Any]] = {
        "bot": {"data_dir": str(data_dir)},
        "limits": {"global_concurrency": 10, "shutdown_grace_seconds": 10.0,
                   "timeout_seconds": 120.0},
        "quota": {"global_daily_usd": 100.0},
        "providers.up": {"api": api, "base_url": base_url, "api_key_env": key_env,
                         "max_retries": 1, "retry_cap_seconds": 0.1},
        "telegram": {"enabled": True, "token_env": token_env, "base_url": telegram.base_url,
                     "base_file_url": telegram.base_file_url, "album_debounce_seconds": 0.2},
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "log": {"format": log_format, "level": "INFO"},
    }
    for table, values in overrides.items():
        sections.setdefault(table.replace("__", "."), {}).update(values)
    return sections


@dataclass
class BotProcess:
    """``python -m adapters.cli run`` in a child process, its stderr/stdout captured to files."""

    config: Path
    env: dict[str, str]
    http_port: int
    log_dir: Path
    proc: asyncio.subprocess.Process | None = None
    runs: int = 0

    async def start(self) -> None:
        """Spawn the bot; returns at once (see :meth:`ready`)."""
        self.runs += 1
        out = (self.log_dir / f"run{self.runs}.stdout").open("wb")
        err = (self.log_dir / f"run{self.runs}.stderr").open("wb")
        with out, err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "adapters.cli", "run", "--config", str(self.config), cwd=ROOT,
                env=self.env, stdout=out, stderr=err)

    def output(self) -> str:
        """Everything every run wrote, stdout and stderr."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("run*")))

    async def ready(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Until /readyz says ready (the store is open and Telegram is being polled)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.returncode is not None:
                    raise AssertionError(f"bot exited with {self.proc.returncode}:\n"
                                         f"{self.output()[-4000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{self.http_port}/readyz") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise AssertionError(f"bot not ready in {timeout} s:\n{self.output()[-4000:]}")
                await asyncio.sleep(0.05)

    async def metrics(self) -> str:
        """The /metrics page."""
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{self.http_port}/metrics") as resp:
            return await resp.text()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (``kill -9`` by default)."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def exit_code(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """Wait for the process to end."""
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def close(self) -> None:
        """Make sure nothing is left running."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@dataclass
class World:
    """The fakes and the bot process of one test."""

    telegram: FakeTelegram
    upstream: SlowUpstream
    bot: BotProcess
    db: Path


@contextlib.asynccontextmanager
async def bot_world(tmp_path: Path, *, env: dict[str, str] | None = None,
                    make_sections: Callable[..., dict[str, dict[str, Any]]] = bot_sections,
                    **overrides: Any) -> AsyncIterator[World]:
    """Start the fakes, write the config and prepare (not start) the bot process."""
    telegram = FakeTelegram()
    upstream = SlowUpstream()
    await telegram.start()
    await upstream.start()
    port = free_port()
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "config.toml",
                          make_sections(data_dir, telegram, upstream.url, http_port=port,
                                        **overrides))
    logs = tmp_path / "logs"
    logs.mkdir()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGINE")}
    child_env.update({"TELEGRAM_BOT_TOKEN": telegram.token, "OPS_UPSTREAM_KEY": UPSTREAM_KEY,
                      "PYTHONUNBUFFERED": "1", **(env or {})})
    bot = BotProcess(config, child_env, port, logs)
    try:
        yield World(telegram, upstream, bot, data_dir / "imagine.sqlite3")
    finally:
        await bot.close()
        await upstream.stop()
        await telegram.stop()


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the bot's database from outside (WAL lets a reader in while the bot writes)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return conn.execute(sql, params).fetchall()


async def until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """Poll ``check`` until it holds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def check_books(db: Path) -> dict[str, int]:
    """The ledger is whole and balanced; returns reservation counts by state."""
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    ids = [row[0] for row in query(db, "SELECT id FROM ledger ORDER BY id")]
    assert ids == list(range(1, len(ids) + 1)), "a ledger row is missing"
    states = dict(query(db, "SELECT state, COUNT(*) FROM reservations GROUP BY state"))
    assert states.get("held", 0) == 0, states
    rows = query(db, "SELECT r.id, r.state, r.credits, r.bonus, r.usd,"
                     " SUM(l.kind = 'reserve'), SUM(l.kind = 'settle'), SUM(l.kind = 'refund'),"
                     " SUM(l.credits), SUM(l.bonus), SUM(l.usd)"
                     " FROM reservations r JOIN ledger l ON l.reservation_id = r.id GROUP BY r.id")
    assert len(rows) == sum(states.values())
    for rid, state, credits, bonus, usd, reserves, settles, refunds, net, net_bonus, net_usd in rows:
        assert reserves == 1 and settles + refunds == 1, (rid, reserves, settles, refunds)
        assert (state == "settled") == (settles == 1), (rid, state)
        if state == "refunded":  # a refund gives back exactly what was held
            assert (net, net_bonus, round(net_usd, 9)) == (0, 0, 0), rid
        else:
            assert (net, net_bonus, round(net_usd, 9)) == (credits, -bonus, round(usd, 9)), rid
    orphans = query(db, "SELECT COUNT(*) FROM ledger WHERE kind != 'grant' AND reservation_id"
                        " NOT IN (SELECT id FROM reservations)")
    assert orphans == [(0,)]
    return {k: int(v) for k, v in states.items()}


async def test_kill_9_with_20_jobs_in_flight_loses_nothing(tmp_path: Path) -> None:
    async with bot_world(tmp_path) as w:
        w.upstream.delay = 60.0  # every job hangs in the upstream until the kill
        await w.bot.start()
        await w.bot.ready()
        asked = [w.telegram.user_sends(f"/imagine crash test {i}", user=user)
                 for i, user in enumerate(USERS[:20])]
        assert len(asked) == 20
        await until(lambda: query(w.db, "SELECT COUNT(*) FROM reservations WHERE state = 'held'")
                    == [(20,)], "20 held reservations")
        await until(lambda: len(w.upstream.seen("gemini")) == 10, "10 upstream calls (the limit)")
        # The updates were confirmed to Telegram (offset moved on): a restart won't replay them.
        await until(lambda: w.telegram._confirmed >= w.telegram._updates[-1]["update_id"],
                    "getUpdates to confirm the 20 updates")
        ledger_before = query(w.db, "SELECT COUNT(*) FROM ledger")[0][0]
        assert ledger_before == 20

        w.bot.kill(signal.SIGKILL)
        assert await w.bot.exit_code() == -signal.SIGKILL
        assert query(w.db, "SELECT COUNT(*) FROM reservations WHERE state = 'held'") == [(20,)]

        w.upstream.delay = 0.0
        await w.bot.start()
        await w.bot.ready()  # start-up (with its refund of stale reservations) is over
        states = check_books(w.db)
        assert states == {"refunded": 20}
        notes = query(w.db, "SELECT note, COUNT(*) FROM ledger WHERE kind = 'refund' GROUP BY note")
        assert notes == [("stale at start-up", 20)]
        assert len(w.upstream.seen("gemini")) == 10  # nothing was replayed

        asked = w.telegram.user_sends("/imagine after the crash", user=USERS[0])
        photo = await w.telegram.wait_for("sendPhoto", timeout=20)
        assert photo.reply_to == asked["message_id"]
        assert photo.text.startswith("after the crash")
        await until(lambda: query(w.db, "SELECT COUNT(*) FROM reservations WHERE state = 'settled'")
                    == [(1,)], "the new job to settle")
        assert check_books(w.db) == {"refunded": 20, "settled": 1}
        # The user got their credits back: 100 a day, 4 spent on the photo after the crash.
        assert "4 credits · 96 left" in photo.text
        assert "imagine_jobs_total" in await w.bot.metrics()
        w.bot.kill(signal.SIGTERM)
        assert await w.bot.exit_code() == 0


async def test_sigterm_finishes_running_jobs_and_refunds_queued(tmp_path: Path) -> None:
    async with bot_world(tmp_path, limits={"global_concurrency": 2,
                                           "shutdown_grace_seconds": 15.0}) as w:
        w.upstream.delay = 2.0
        await w.bot.start()
        await w.bot.ready()
        users = USERS[20:26]
        asked = {user.id: w.telegram.user_sends(f"/imagine polite stop {i}", user=user)
                 for i, user in enumerate(users)}
        await until(lambda: query(w.db, "SELECT COUNT(*) FROM reservations") == [(6,)],
                    "6 reservations")
        await until(lambda: len(w.upstream.seen("gemini")) == 2, "2 running jobs")
        running = {int(s.json["contents"][0]["parts"][0]["text"].rsplit(" ", 1)[1])
                   for s in w.upstream.seen("gemini")}
        started = time.monotonic()
        w.bot.kill(signal.SIGTERM)
        assert await w.bot.exit_code(timeout=30) == 0
        assert time.monotonic() - started < 15.0

        photos = w.telegram.calls_of("sendPhoto")
        assert sorted(p.chat_id for p in photos) == sorted(users[i].id for i in running)
        for p in photos:
            assert p.reply_to == asked[p.chat_id]["message_id"]
        told = [c for c in w.telegram.calls_of("sendMessage") if c.text.startswith("Cancelled.")]
        assert sorted(c.chat_id for c in told) == sorted(
            u.id for i, u in enumerate(users) if i not in running)
        assert len(w.upstream.seen("gemini")) == 2  # queued jobs never reached the upstream
        assert check_books(w.db) == {"settled": 2, "refunded": 4}
        output = w.bot.output()
        assert "Traceback" not in output
        # One JSON line per job: the delivered ones with every duration, the others cancelled.
        jobs = [json.loads(line)["job"] for line in output.splitlines() if '"job": {' in line]
        assert sorted(j["outcome"] for j in jobs) == ["cancelled"] * 4 + ["ok"] * 2
        for job in jobs:
            assert job["platform"] == "telegram" and job["model"] == "nano-banana-2.1"
            if job["outcome"] == "ok":
                assert {"queue", "upstream", "fit", "upload"} <= set(job["durations"]), job
