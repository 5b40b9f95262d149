"""The e2e benchmark's bot: ``python -m adapters.cli run`` in its own process, and /proc readings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

from bench.e2e_fakes import DC_TOKEN, TG_TOKEN
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def proc_mem(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of ``pid`` in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def self_cpu() -> float:
    """This process's CPU seconds so far."""
    t = os.times()
    return t.user + t.system


class Bot:
    """``python -m adapters.cli run`` on a temp data dir, pointed at the fakes."""

    def __init__(self, workdir: Path, telegram: FakeTelegram, discord: FakeDiscord,
                 upstream_url: str, *, users: int, profile: Path | None = None,
                 spy: Path | None = None) -> None:
        self.port = free_port()
        self.profile = profile
        self.spy = spy
        self.log = workdir / "bot.log"
        config = f"""
[bot]
data_dir = "{workdir / 'data'}"
[limits]
global_concurrency = {min(1000, max(4, users))}
queue_size = {max(200, users * 2)}
timeout_seconds = 600
timeout_4k_seconds = 600
shutdown_grace_seconds = 5
[quota]
user_daily_credits = 10000000
user_monthly_credits = 100000000
global_daily_usd = 0
[providers.up]
api = "gemini"
base_url = "{upstream_url}"
api_key_env = "BENCH_UPSTREAM_KEY"
[telegram]
enabled = true
token_env = "BENCH_TG_TOKEN"
base_url = "{telegram.base_url}"
base_file_url = "{telegram.base_file_url}"
[discord]
enabled = true
token_env = "BENCH_DC_TOKEN"
api_base_url = "{discord.api_url}"
gateway_url = "{discord.gateway_url}"
[http]
listen = "127.0.0.1:{self.port}"
[log]
format = "text"
level = "INFO"
"""
        self.config = workdir / "config.toml"
        self.config.write_text(config)
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Spawn and wait for /readyz."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGINE")}
        env.update(BENCH_UPSTREAM_KEY="bench-key", BENCH_TG_TOKEN=TG_TOKEN,
                   BENCH_DC_TOKEN=DC_TOKEN)
        # pyinstrument (pip install it into .venv; not a dependency) samples the event loop.
        profiler = ["-m", "pyinstrument", "-r", "text", "-o", str(self.profile.resolve())] if (
            self.profile) else []
        # py-spy (pip install it into .venv; not a dependency) samples every thread, with the
        # GIL holder marked: collapsed stacks, one line per stack, for flame graphs or grep.
        spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw",
               "--threads", "--gil", "--nonblocking", "-r", "1000", "-o", str(self.spy.resolve()), "--",
               ] if self.spy else []
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *spy, sys.executable, *profiler, "-m", "adapters.cli", "run", "--config", str(self.config),
                cwd=ROOT, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise SystemExit(f"bot exited:\n{self.log.read_text()[-3000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{self.port}/readyz") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise SystemExit(f"bot not ready:\n{self.log.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        """The bot's process id."""
        assert self.proc is not None
        if self.spy:  # py-spy's child is the bot
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            return int(children.split()[0])
        return self.proc.pid

    async def stop(self) -> None:
        """SIGTERM, and wait."""
        if self.proc is not None and self.proc.returncode is None:
            os.kill(self.pid, signal.SIGTERM)  # the bot itself, not a profiler wrapping it
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
