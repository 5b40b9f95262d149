"""Whether an instance on a SQLite database still runs: each holds an OS lock on a file of its own.

The kernel drops a ``flock`` when its holder exits, ``kill -9`` included, so a process restarted
after a crash finds its predecessor dead at once instead of waiting out the lease. SQLite in WAL
mode needs every process on one host (they share memory), so every process using the database
sees the same lock files. Where ``fcntl`` is missing (Windows) the lease alone decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from bot.storage.base import Reservation
from bot.storage.sqlite_tx import SqliteQuotaTx

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


class ProcessLocks:
    """One lock file per instance in ``folder``; blocking calls (run them in a thread)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._held: dict[str, int] = {}

    def _path(self, instance_id: str) -> Path:
        if not _ID.fullmatch(instance_id):
            raise ValueError(f"bad instance id {instance_id!r}")
        return self.folder / f"{instance_id}.lock"

    def hold(self, instance_id: str) -> None:
        """Lock this instance's file for as long as the process lives (or until release)."""
        if fcntl is None or instance_id in self._held:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(instance_id), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._held[instance_id] = fd

    def release(self, instance_id: str) -> None:
        """Unlock and remove this instance's file."""
        fd = self._held.pop(instance_id, None)
        if fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self._path(instance_id).unlink()
        os.close(fd)

    def alive(self, instance_id: str) -> bool:
        """False when nobody holds the instance's lock (its process is gone); True if unsure."""
        if fcntl is None or instance_id in self._held:
            return True
        try:
            fd = os.open(self._path(instance_id), os.O_RDWR)
        except (FileNotFoundError, ValueError):
            return False  # never held here (or by another version), or cleaned up after death
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a live process (or a lock we cannot judge): not ours to take
            return True
        finally:
            os.close(fd)  # closing also drops the lock we may have taken
        with contextlib.suppress(FileNotFoundError):
            self._path(instance_id).unlink()
        return False

    def close(self) -> None:
        """Release every lock this object holds."""
        for instance_id in list(self._held):
            self.release(instance_id)


def _iso(moment: datetime) -> str:
    """A UTC time as text that sorts as it compares (always with microseconds)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class SqliteLeases:
    """The instance and lease part of the Store port for :class:`~bot.storage.sqlite.SqliteStore`."""

    _processes: ProcessLocks

    def _writing(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError

    async def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def register_instance(self, instance_id: str, lease_seconds: float) -> None:
        """Record this process with its lease (and its lock file); forget day-old dead ones."""
        await asyncio.to_thread(self._processes.hold, instance_id)
        now = datetime.now(UTC)
        async with self._writing() as db:
            await db.execute("DELETE FROM instances WHERE lease_until < ?",
                             (_iso(now - timedelta(days=1)),))
            await self._put_instance(db, instance_id, now, lease_seconds)

    @staticmethod
    async def _put_instance(db: aiosqlite.Connection, instance_id: str, now: datetime,
                            lease_seconds: float) -> None:
        await db.execute(
            "INSERT OR REPLACE INTO instances (id, host, pid, started, lease_until)"
            " VALUES (?, ?, ?, ?, ?)", (instance_id, socket.gethostname(), os.getpid(), _iso(now),
                                        _iso(now + timedelta(seconds=lease_seconds))))

    async def renew_instance(self, instance_id: str, lease_seconds: float) -> bool:
        """Extend the lease; False (and taken again) when it had lapsed or was forgotten."""
        now = datetime.now(UTC)
        async with self._writing() as db:
            cursor = await db.execute(
                "UPDATE instances SET lease_until = ? WHERE id = ? AND lease_until >= ?",
                (_iso(now + timedelta(seconds=lease_seconds)), instance_id, _iso(now)))
            if cursor.rowcount:
                return True
            await self._put_instance(db, instance_id, now, lease_seconds)
            return False

    async def retire_instance(self, instance_id: str) -> None:
        """Drop this process's row and its lock file."""
        async with self._writing() as db:
            await db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
        await asyncio.to_thread(self._processes.release, instance_id)

    async def orphaned_reservations(self) -> list[Reservation]:
        """Held reservations whose owner has no live lease, or whose process is gone."""
        # A parked result's are not orphans: the outbox sends or refunds them (bot/outbox.py).
        rows = await self._rows(
            "SELECT r.*, i.id AS leased FROM reservations r LEFT JOIN instances i"
            " ON i.id = r.owner AND i.lease_until >= ? WHERE r.state = 'held'"
            " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.turn_id = r.turn_id)",
            (_iso(datetime.now(UTC)),))
        owners = {r["leased"] for r in rows if r["leased"] is not None}
        # A crash leaves its lease running for up to lease_seconds; its lock file tells at once.
        gone = {o for o in owners if not await asyncio.to_thread(self._processes.alive, o)}
        return [SqliteQuotaTx.reservation_from(r) for r in rows
                if r["leased"] is None or r["leased"] in gone]
