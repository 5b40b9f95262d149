"""Shared fixtures: settings on a temp data dir and a started Core with the demo provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.bootstrap import Core, build_core
from bot.config import Settings


def make_settings(data_dir: Path, **sections: Any) -> Settings:
    """Settings with ``data_dir`` set and any section overridden (dicts merged per section)."""
    raw: dict[str, Any] = {"bot": {"data_dir": str(data_dir)}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return Settings.model_validate(raw)


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Build Settings rooted in this test's temp dir: ``settings_factory(quota={...})``."""
    return lambda **sections: make_settings(tmp_path / "data", **sections)


@pytest.fixture
async def core(settings_factory: Callable[..., Settings]) -> AsyncIterator[Core]:
    """A started Core (SQLite on disk in a temp dir, demo provider); stopped after the test."""
    built = build_core(settings_factory())
    await built.start()
    yield built
    await built.stop(grace=0)
