"""Several ``imagine-bot run`` processes on one PostgreSQL database and one Redis prefix, with the
loopback fakes: Telegram by webhook through a round-robin balancer, Discord on shards. Used by
tests/test_scale_processes.py and bench/bench_scale.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from tests.redis_service import REDIS_URL, redis_prefix
from tests.store_engines import ADMIN_URL, admin, service_missing, with_database
from tests.test_ops_crash import BotProcess, free_port, write_config

UPSTREAM_KEY = "sk-scale-UPSTREAM-2b7c41d09e3f5a68"


class Balancer:
    """Telegram's webhook address: each POST goes to the next live receiver, in turn."""

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets
        self.dead: set[int] = set()
        #: Which receiver took each update, by the (chat id, message id) it carried.
        self.routed: dict[tuple[int, int], int] = {}
        self._next = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application(client_max_size=1 << 22)
        app.router.add_post("/hook", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hook"
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items()
                   if k.lower().startswith("x-telegram") or k.lower() == "content-type"}
        assert self._http is not None
        for _ in range(len(self.targets)):
            index = self._next % len(self.targets)
            self._next += 1
            if index in self.dead:
                continue
            try:
                async with self._http.post(self.targets[index], data=body,
                                           headers=headers) as answer:
                    message = json.loads(body).get("message") or {}
                    if answer.status == 200 and message:
                        self.routed[message["chat"]["id"], message["message_id"]] = index
                    return web.Response(status=answer.status)
            except aiohttp.ClientError:
                self.dead.add(index)  # a receiver that stopped answering is taken out
        return web.Response(status=502)

    async def stop(self) -> None:
        """Stop listening."""
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new PostgreSQL database for one run, dropped after (skips without a server)."""
    name = f"imagine_scale_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        await admin(ADMIN_URL, f'CREATE DATABASE "{name}"')
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        service_missing(f"PostgreSQL is not reachable ({type(exc).__name__}: {exc})")
    try:
        yield with_database(ADMIN_URL, name)
    finally:
        await admin(ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Cluster:
    """The processes, the balancer in front of their webhooks, and what they share."""

    procs: list[BotProcess]
    balancer: Balancer
    database: str
    prefix: str
    webhook_ports: list[int] = field(default_factory=list)

    async def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Rows from the shared database."""
        conn = await asyncpg.connect(self.database, timeout=5)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()


def process_sections(data_dir: Path, *, database: str, prefix: str, upstream_url: str,
                     http_port: int, telegram: dict[str, Any] | None,
                     discord: dict[str, Any] | None,
                     **overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One process's config: the shared store and Redis, one upstream, its platforms."""
    sections: dict[str, dict[str, Any]] = {
        "bot": {"data_dir": str(data_dir)},
        "limits": {"global_concurrency": 4, "shutdown_grace_seconds": 2.0,
                   "timeout_seconds": 120.0, "timeout_4k_seconds": 180.0},
        "quota": {"global_daily_usd": 10_000.0},
        "providers.up": {"api": "gemini", "base_url": upstream_url, "api_key_env": "SCALE_KEY",
                         "max_retries": 1, "retry_cap_seconds": 0.1},
        "store": {"url": database},
        "redis": {"url": REDIS_URL, "prefix": prefix},
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "log": {"format": "json", "level": "INFO"},
    }
    if telegram is not None:
        sections["telegram"] = {"enabled": True, "token_env": "TELEGRAM_BOT_TOKEN", **telegram}
    if discord is not None:
        sections["discord"] = {"enabled": True, "token_env": "DISCORD_BOT_TOKEN", **discord}
    for table, values in overrides.items():
        sections.setdefault(table.replace("__", "."), {}).update(values)
    return sections


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path, *, count: int, telegram: Any | None, discord: Any | None,
                  upstream_url: str, shards: int = 0,
                  **overrides: dict[str, Any]) -> AsyncIterator[Cluster]:
    """``count`` processes (started and ready): all receive Telegram webhooks through the
    balancer; the first ``shards`` run one Discord shard each."""
    async with fresh_database() as database, redis_prefix() as prefix:
        ports = [free_port() for _ in range(count)]
        balancer = Balancer([f"http://127.0.0.1:{p}/hook" for p in ports])
        await balancer.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGINE")}
        env.update({"SCALE_KEY": UPSTREAM_KEY, "PYTHONUNBUFFERED": "1"})
        if telegram is not None:
            env["TELEGRAM_BOT_TOKEN"] = telegram.token
        if discord is not None:
            env["DISCORD_BOT_TOKEN"] = discord.token
        procs = []
        for i in range(count):
            tg = None if telegram is None else {
                "base_url": telegram.base_url, "base_file_url": telegram.base_file_url,
                "webhook_url": balancer.url, "webhook_listen": f"127.0.0.1:{ports[i]}"}
            dc = None if discord is None or i >= shards else {
                "api_base_url": discord.api_url, "gateway_url": discord.gateway_url,
                "shard_count": shards, "shard_ids": [i]}
            folder = tmp_path / f"p{i}"
            (folder / "logs").mkdir(parents=True)
            http = free_port()
            config = write_config(folder / "config.toml", process_sections(
                folder / "data", database=database, prefix=prefix, upstream_url=upstream_url,
                http_port=http, telegram=tg, discord=dc, **overrides))
            procs.append(BotProcess(config, env, http, folder / "logs"))
        made = Cluster(procs, balancer, database, prefix, ports)
        try:
            await asyncio.gather(*(p.start() for p in procs))
            await asyncio.gather(*(p.ready(60) for p in procs))
            yield made
        finally:
            for proc in procs:
                if proc.proc is not None and proc.proc.returncode is None:
                    proc.kill(15)
            for proc in procs:
                with contextlib.suppress(TimeoutError, AssertionError):
                    await proc.exit_code(20)
                await proc.close()
            await balancer.stop()
