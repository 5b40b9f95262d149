"""Start-up logs tell the operator each platform is connected and ready, and nothing irrelevant."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from bot.config import Settings
from tests.fake_discord import FakeDiscord, discord_settings, running_bot


async def test_discord_says_it_is_ready_and_nothing_about_voice(
        settings_factory: Callable[..., Settings], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with FakeDiscord() as fake, running_bot(fake, discord_settings(settings_factory,
                                                                         fake)) as bot:
        async with asyncio.timeout(5):
            # The log line is written by the client's task; nothing to await but the records.
            while not any("discord: connected as" in r.getMessage()  # noqa: ASYNC110
                          for r in caplog.records):
                await asyncio.sleep(0.01)
        assert bot.adapter.connected
    ready = [r for r in caplog.records if "discord: connected as" in r.getMessage()]
    assert len(ready) == 1 and ready[0].levelno == logging.INFO
    assert "ready" in ready[0].getMessage()
    voice = [r.getMessage() for r in caplog.records
             if "PyNaCl" in r.getMessage() or "davey" in r.getMessage()]
    assert voice == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                and r.name.startswith("discord")], [r.getMessage() for r in caplog.records]
