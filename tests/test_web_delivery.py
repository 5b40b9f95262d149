"""Money on the console's delivery path: a result the console cannot record is refunded, once."""

from __future__ import annotations

import logging
import re

import pytest

from bot.domain import MessageRef
from tests.test_web_harness import Factory, running_console, visitor


async def test_a_result_that_cannot_be_recorded_is_refunded_exactly_once(
        settings_factory: Factory, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    async with running_console(settings_factory) as run, visitor(run) as v:
        async def disk_full(turn_id: str, messages: list[MessageRef]) -> None:
            raise OSError("No space left on device")

        # The console's one platform verb is recording the card as the turn's message.
        monkeypatch.setattr(run.core.conversations, "bind", disk_full)
        result = await v.imagine("a fox that never arrives")
        assert result["state"] == "failed"
        shown = re.search(r"Something went wrong \(error ([0-9a-f]{8})\)\. Nothing was charged\.",
                          result["html"])
        assert shown, result["html"]
        assert f"(error {shown.group(1)})" in caplog.text  # the log has the id, and the trace
        assert "No space left on device" in caplog.text
        assert await run.ledger_kinds() == ["reserve", "refund"]
        assert await run.core.store.held_reservations() == []
        assert await run.core.store.recent_turns(10) == []  # the undelivered turn is dropped
        assert 'data-left="100"' in result["quota"]
        monkeypatch.undo()
        assert (await v.imagine("a fox that arrives"))["state"] == "done"
        assert await run.ledger_kinds() == ["reserve", "refund", "reserve", "settle"]
