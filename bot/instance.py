"""This process among others on one store: an instance id, a lease kept by a heartbeat, and a
sweep that refunds what instances whose lease lapsed (or whose process is gone) still held.

Each process makes a random id at start; every reservation it makes records that id as its
owner. A reservation is refunded by another process only once its owner stopped renewing, so a
job in flight elsewhere is never refunded under it; of two processes sweeping at once, exactly
one refunds each orphan (the store's conditional close decides).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from bot.errors import StoreUnavailable
from bot.quotas import Quotas
from bot.storage.base import Store

log = logging.getLogger(__name__)


def new_instance_id() -> str:
    """A random id for this process (16 hex digits)."""
    return secrets.token_hex(8)


class Instance:
    """Registers this process, renews its lease every third of it, and sweeps for orphans."""

    def __init__(self, store: Store, quotas: Quotas, *, instance_id: str,
                 lease_seconds: float = 60.0) -> None:
        self.id = instance_id
        self.lease_seconds = lease_seconds
        self._store = store
        self._quotas = quotas
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Take a lease, refund what dead instances held, then keep the lease; the refund count."""
        refunded = 0
        try:
            await self._store.register_instance(self.id, self.lease_seconds)
        except StoreUnavailable as exc:
            # A database that refuses writes: run degraded (readiness says so, every job is
            # refused before it reserves) and take the lease when the heartbeat can.
            log.warning("instance %s: cannot take a lease yet (%s)", self.id, exc)
        else:
            refunded = await self._quotas.refund_stale()
        self._task = asyncio.create_task(self._beat(), name=f"instance-{self.id}")
        return refunded

    async def beat(self) -> int:
        """Renew the lease once and sweep once; the number of reservations refunded."""
        if not await self._store.renew_instance(self.id, self.lease_seconds):
            # Stalled past the lease (a long pause, the database out of reach): others may
            # have refunded what this process held; its jobs still finish, settled or not.
            log.warning("instance %s: its lease had lapsed and was taken again", self.id)
        return await self._quotas.refund_stale()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                refunded = await self.beat()
            except StoreUnavailable as exc:
                log.warning("instance %s: heartbeat failed (%s); trying again", self.id, exc)
                continue
            except Exception:
                log.exception("instance %s: heartbeat failed; trying again", self.id)
                continue
            if refunded:
                log.warning("refunded %d reservation(s) of a stopped instance", refunded)

    async def stop(self) -> None:
        """Stop renewing and give the lease up (what is still held becomes orphaned)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await self._store.retire_instance(self.id)
        except StoreUnavailable as exc:
            log.warning("instance %s: could not retire (%s); its lease will lapse", self.id, exc)
