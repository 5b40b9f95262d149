"""Job scheduler: global and per-owner limits, round-robin queue, positions, timeouts, drain."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from bot.errors import QueueFull, TooManyWaiting
from bot.jobs_local import (
    CALLBACK_TIMEOUT,
    STOP_TIMEOUT,
    Job,
    LocalRuns,
    ProgressCallback,
)

__all__ = ["CALLBACK_TIMEOUT", "STOP_TIMEOUT", "JobScheduler", "ProgressCallback", "Scheduler",
           "SchedulerStats"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    """Queued and running counts, overall and per owner as ``(running, queued)``."""

    queued: int
    running: int
    by_owner: dict[str, tuple[int, int]]


class Scheduler(Protocol):
    """What the core needs of a scheduler: this in-process one, or bot/scheduler_redis.py's."""

    @property
    def accepting(self) -> bool:
        """False once drain() has started."""

    async def open(self) -> None:
        """Connect whatever the scheduler shares with other processes (nothing here)."""

    async def aclose(self) -> None:
        """Let go of those connections (after drain())."""

    async def sweep(self) -> int:
        """Free what processes that stopped held in the shared queue; how many there were."""

    async def run(self, owner: str, work: Callable[[], Awaitable[T]], *, timeout: float,  # noqa: ASYNC109
                  on_progress: ProgressCallback | None = None, job_id: str | None = None) -> T:
        """Queue ``work`` for ``owner``, run it when a slot frees, return or raise its outcome."""

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job (its run() raises Cancelled); False if unknown."""

    def cancel_owner(self, owner: str) -> int:
        """Cancel every queued and running job of ``owner``; how many were cancelled here."""

    async def drain(self, grace: float) -> None:
        """Refuse new jobs, cancel queued ones, give running ones ``grace`` s, cancel the rest."""

    def snapshot(self) -> SchedulerStats:
        """Queued and running counts, overall and per owner."""

    def position(self, job_id: str) -> int | None:
        """1-based place of a waiting job in the predicted start order; None if not waiting."""


@dataclass(eq=False, slots=True)
class _Owner:
    """One owner's waiting jobs (FIFO) and running jobs."""

    queue: deque[Job] = field(default_factory=deque)
    running: set[Job] = field(default_factory=set)


class JobScheduler(LocalRuns):
    """Runs jobs under global and per-owner limits, round-robin across owners, FIFO per owner."""

    def __init__(self, *, global_concurrency: int, per_user_concurrency: int = 1,
                 per_user_queued: int = 1, queue_size: int = 200,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if global_concurrency < 1 or per_user_concurrency < 1:
            raise ValueError("concurrency limits must be at least 1")
        if per_user_queued < 0 or queue_size < 0:
            raise ValueError("queue limits must not be negative")
        super().__init__(clock)
        self._global = global_concurrency
        self._per_user = per_user_concurrency
        self._per_user_queued = per_user_queued
        self._queue_size = queue_size
        self._owners: dict[str, _Owner] = {}
        self._ring: dict[str, None] = {}  # owners with waiting jobs, in rotation order
        self._queued = 0
        self._running = 0
        self._refresh_handle: asyncio.Handle | None = None

    async def open(self) -> None:
        """Nothing to connect: everything lives in this process."""

    async def aclose(self) -> None:
        """Nothing to let go of."""

    async def sweep(self) -> int:
        """Nothing is shared with other processes: nothing to free."""
        return 0

    async def run(self, owner: str, work: Callable[[], Awaitable[T]], *, timeout: float,  # noqa: ASYNC109
                  on_progress: ProgressCallback | None = None, job_id: str | None = None) -> T:
        """Queue ``work`` for ``owner``, run it when a slot frees, return or raise its outcome."""
        job = self._submit(owner, work, timeout, on_progress is not None, job_id)
        return cast(T, await self._wait(job, on_progress))

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job (its run() raises Cancelled); False if unknown."""
        job = self._jobs.get(job_id)
        return job is not None and self._cancel(job, "cancel")

    def cancel_owner(self, owner: str) -> int:
        """Cancel every queued and running job of ``owner``; return how many were cancelled."""
        slot = self._owners.get(owner)
        if slot is None:
            return 0
        jobs = [*reversed(slot.queue), *slot.running]
        return sum(self._cancel(job, "cancel") for job in jobs)

    async def drain(self, grace: float) -> None:
        """Refuse new jobs, cancel queued ones, give running ones ``grace`` s, cancel the rest."""
        self._accepting = False
        for job in [j for j in self._jobs.values() if j.task is None]:
            self._cancel(job, "drain")
        tasks = {j.task for j in self._jobs.values() if j.task is not None}
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=max(grace, 0.0))
        for job in [j for j in self._jobs.values() if j.task in pending]:
            self._cancel(job, "drain")
        if pending:
            _, stuck = await asyncio.wait(pending, timeout=STOP_TIMEOUT)
            if stuck:
                log.warning("drain: %d job(s) ignored cancellation", len(stuck))

    def snapshot(self) -> SchedulerStats:
        """Current counts, overall and per owner."""
        by_owner = {o: (len(s.running), len(s.queue)) for o, s in self._owners.items()}
        return SchedulerStats(queued=self._queued, running=self._running, by_owner=by_owner)

    def position(self, job_id: str) -> int | None:
        """1-based place of a waiting job in the predicted start order; None if not waiting."""
        job = self._jobs.get(job_id)
        if job is None or job.task is not None:
            return None
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
            self._refresh()
        return job.position

    def _submit(self, owner: str, work: Callable[[], Awaitable[Any]], timeout: float,
                notify: bool, job_id: str | None) -> Job:
        """Admit a job (start it now or queue it) or raise QueueFull / TooManyWaiting."""
        if not self._accepting:
            raise QueueFull()
        job_id = job_id or secrets.token_hex(8)
        if job_id in self._jobs:
            raise ValueError(f"duplicate job id {job_id!r}")
        slot = self._owners.get(owner) or _Owner()
        can_start = (self._running < self._global and len(slot.running) < self._per_user
                     and not slot.queue)
        waiting = len(slot.queue)
        if not can_start:
            if waiting >= self._per_user_queued and (waiting or slot.running):
                raise TooManyWaiting(waiting)
            if self._queued >= self._queue_size or waiting >= self._per_user_queued:
                raise QueueFull()
        job = Job(id=job_id, owner=owner, work=work, timeout=timeout, submitted=self._clock(),
                   notify=notify, context=contextvars.copy_context())
        self._owners[owner] = slot
        self._jobs[job_id] = job
        if can_start:
            self._start(job)
        else:
            slot.queue.append(job)
            self._queued += 1
            self._ring.setdefault(owner, None)
            self._changed()
        return job

    def _pump(self) -> None:
        """Start waiting jobs while global slots are free: next eligible owner in rotation."""
        while self._running < self._global and self._ring:
            for owner in self._ring:
                slot = self._owners[owner]
                if len(slot.running) < self._per_user:
                    break
            else:
                return
            job = slot.queue.popleft()
            self._queued -= 1
            del self._ring[owner]
            if slot.queue:
                self._ring[owner] = None
            self._start(job)
            self._changed()

    def _start(self, job: Job) -> None:
        """Take the slots and spawn the work task with its timeout."""
        self._owners[job.owner].running.add(job)
        self._running += 1
        super()._start(job)

    def _released(self, job: Job) -> None:
        """Work task ended (its outcome recorded): free its slots, start the next job."""
        self._owners[job.owner].running.discard(job)
        self._running -= 1
        self._forget(job.owner)
        self._pump()

    def _dequeued(self, job: Job) -> None:
        """Take a waiting job out of its owner's queue (and the rotation if it was the last)."""
        slot = self._owners[job.owner]
        slot.queue.remove(job)
        self._queued -= 1
        if not slot.queue:
            self._ring.pop(job.owner, None)
        self._forget(job.owner)
        self._changed()

    def _forget(self, owner: str) -> None:
        """Drop an owner's record once it has nothing waiting or running."""
        slot = self._owners.get(owner)
        if slot is not None and not slot.queue and not slot.running:
            del self._owners[owner]

    def _changed(self) -> None:
        """The queue changed: recompute positions once, on the next loop iteration."""
        if self._refresh_handle is None:
            self._refresh_handle = asyncio.get_running_loop().call_soon(self._refresh)

    def _refresh(self) -> None:
        """Number waiting jobs in round-robin start order and tell those whose place changed."""
        self._refresh_handle = None
        position = 0
        rounds = [iter(self._owners[owner].queue) for owner in self._ring]
        while rounds:
            alive = []
            for jobs in rounds:
                job = next(jobs, None)
                if job is None:
                    continue
                alive.append(jobs)
                position += 1
                if job.position != position:
                    job.position = position
                    self._emit(job, "queued")
            rounds = alive

