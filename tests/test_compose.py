"""compose.yaml runs the topology the README describes: every bot process on the same
PostgreSQL and Redis, each Discord shard in exactly one process, one webhook URL for the
Telegram receivers, and each service's settings load as the bot would load them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bot.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
FILLED = {"POSTGRES_PASSWORD": "pw", "TELEGRAM_BOT_TOKEN": "1:x", "DISCORD_BOT_TOKEN": "d",
          "PUBLIC_HOST": "bot.example.com", "IMAGINE_CONSOLE_TOKEN": "t" * 40,
          "GEMINI_API_KEY": ""}


def interpolate(value: str) -> str:
    """Compose's ${VAR:?message} / ${VAR:-default}, from FILLED."""
    return re.sub(r"\$\{(\w+)(?::[?-][^}]*)?\}", lambda m: FILLED[m.group(1)], value)


def bot_settings() -> dict[str, Settings]:
    """Every service built from this repo, with the settings its environment gives."""
    services: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    out = {}
    for name, service in services.items():
        if service.get("build") != ".":
            continue
        env = {k: interpolate(str(v)) for k, v in service["environment"].items()}
        out[name] = load_settings(None, env)
    return out


def test_compose_topology() -> None:
    bots = bot_settings()
    assert set(bots) == {"telegram-a", "telegram-b", "discord-0", "discord-1", "web"}
    assert {s.store.url for s in bots.values()} == {"postgresql://imagine@postgres:5432/imagine"}
    assert {s.redis.url for s in bots.values()} == {"redis://redis:6379/0"}
    discord = [s.discord for s in bots.values() if s.discord.enabled]
    assert {d.shard_count for d in discord} == {2}
    assert sorted(i for d in discord for i in d.shard_ids) == [0, 1]
    telegram = [s.telegram for s in bots.values() if s.telegram.enabled]
    assert len(telegram) == 2 and len({t.webhook_url for t in telegram}) == 1
    assert all(t.webhook_owner is None for t in telegram)  # the Redis role decides
    assert [n for n, s in bots.items() if s.web.enabled == "on"] == ["web"]
