"""Shared fixtures: settings on a temp data dir, a started Core with the demo provider, and the
store under test on each engine (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.bootstrap import Core, build_core
from bot.config import Settings
from bot.storage.postgres import PostgresStore
from bot.storage.sqlite import SqliteStore
from tests import store_engines as engines


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


# ----- the store under test, on each engine (tests/store_engines.py) -------------------------


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database made for this test session and dropped after it; its URL."""
    url = engines.create_database()
    yield url
    engines.drop_database(url)


@pytest.fixture
async def pg_schema(pg_database: str) -> AsyncIterator[str]:
    """A fresh schema for one test (dropped after it)."""
    name = await engines.new_schema(pg_database)
    yield name
    await engines.drop_schema(pg_database, name)


@pytest.fixture(params=engines.ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Which engine the store tests run on: each test once per engine."""
    return str(request.param)


StoreFactory = Callable[..., "engines.AnyStore"]


@pytest.fixture
def store_factory(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    """New (unopened) stores on one database: a second one is a second process's view of it."""
    if engine == "sqlite":
        path = tmp_path / "db" / "imagine.sqlite3"
        return lambda **kwargs: SqliteStore(path, **kwargs)
    url = request.getfixturevalue("pg_database")
    schema = request.getfixturevalue("pg_schema")
    return lambda **kwargs: PostgresStore(url, schema=schema, **kwargs)


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[engines.AnyStore]:
    """An open store on the engine under test; closed after the test."""
    opened = store_factory()
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def two(store_factory: StoreFactory) -> AsyncIterator[tuple[engines.AnyStore, engines.AnyStore]]:
    """Two open stores on one database: two processes' views of it."""
    stores = (store_factory(), store_factory())
    for s in stores:
        await s.open()
    yield stores
    for s in stores:
        await s.close()
