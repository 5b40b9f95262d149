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
from typing import Any, Literal, TypeVar, cast

from bot.domain import Progress, ProgressStage
from bot.errors import BotError, Cancelled, JobTimeout, QueueFull, TooManyWaiting

__all__ = ["CALLBACK_TIMEOUT", "JobScheduler", "ProgressCallback", "SchedulerStats"]

log = logging.getLogger(__name__)
T = TypeVar("T")
ProgressCallback = Callable[[Progress], Awaitable[None]]
_Reason = Literal["timeout", "cancel", "drain", "caller"]

#: Longest one progress callback may take; a slower one is abandoned and logged.
CALLBACK_TIMEOUT = 10.0
#: How long drain() waits for cancelled work to actually stop before giving up on it.
STOP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    """Queued and running counts, overall and per owner as ``(running, queued)``."""

    queued: int
    running: int
    by_owner: dict[str, tuple[int, int]]


@dataclass(eq=False, slots=True)
class _Job:
    """One submitted job: its work, its state and the events its run() call will deliver."""

    id: str
    owner: str
    work: Callable[[], Awaitable[Any]]
    timeout: float
    submitted: float
    notify: bool
    context: contextvars.Context
    position: int | None = None
    task: asyncio.Task[Any] | None = None
    timer: asyncio.TimerHandle | None = None
    reason: _Reason | None = None
    done: bool = False
    result: Any = None
    error: BaseException | None = None
    events: deque[Progress] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False, slots=True)
class _Owner:
    """One owner's waiting jobs (FIFO) and running jobs."""

    queue: deque[_Job] = field(default_factory=deque)
    running: set[_Job] = field(default_factory=set)


class JobScheduler:
    """Runs jobs under global and per-owner limits, round-robin across owners, FIFO per owner."""

    def __init__(self, *, global_concurrency: int, per_user_concurrency: int = 1,
                 per_user_queued: int = 1, queue_size: int = 200,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if global_concurrency < 1 or per_user_concurrency < 1:
            raise ValueError("concurrency limits must be at least 1")
        if per_user_queued < 0 or queue_size < 0:
            raise ValueError("queue limits must not be negative")
        self._global = global_concurrency
        self._per_user = per_user_concurrency
        self._per_user_queued = per_user_queued
        self._queue_size = queue_size
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._owners: dict[str, _Owner] = {}
        self._ring: dict[str, None] = {}  # owners with waiting jobs, in rotation order
        self._queued = 0
        self._running = 0
        self._accepting = True
        self._refresh_handle: asyncio.Handle | None = None

    @property
    def accepting(self) -> bool:
        """False once drain() has started."""
        return self._accepting

    async def run(self, owner: str, work: Callable[[], Awaitable[T]], *, timeout: float,  # noqa: ASYNC109
                  on_progress: ProgressCallback | None = None, job_id: str | None = None) -> T:
        """Queue ``work`` for ``owner``, run it when a slot frees, return or raise its outcome."""
        job = self._submit(owner, work, timeout, on_progress is not None, job_id)
        try:
            while True:
                await job.wake.wait()
                job.wake.clear()
                while job.events and on_progress is not None:
                    await _notify(on_progress, job.events.popleft())
                if job.done and not job.events:
                    break
        except BaseException as exc:  # the caller went away: drop or cancel the job
            if job.done or job.task is None:
                self._cancel(job, "caller")
            else:
                job.reason = job.reason or "caller"
                job.task.cancel()
                if isinstance(exc, asyncio.CancelledError):
                    await asyncio.wait({job.task})  # no orphan: the work has stopped
            raise
        if job.error is not None:
            raise job.error
        return cast(T, job.result)

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
                notify: bool, job_id: str | None) -> _Job:
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
        job = _Job(id=job_id, owner=owner, work=work, timeout=timeout, submitted=self._clock(),
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

    def _start(self, job: _Job) -> None:
        """Take the slots and spawn the work task with its timeout."""
        self._owners[job.owner].running.add(job)
        self._running += 1
        job.position = None
        self._emit(job, "started")
        loop = asyncio.get_running_loop()
        job.task = loop.create_task(_call(job.work), name=f"job:{job.id}", context=job.context)
        job.task.add_done_callback(lambda task: self._finished(job, task))
        job.timer = loop.call_later(job.timeout, self._expire, job)

    def _expire(self, job: _Job) -> None:
        """Timeout: cancel the work task; its run() will raise JobTimeout."""
        job.timer = None
        if job.task is not None and not job.task.done() and job.reason is None:
            job.reason = "timeout"
            job.task.cancel()

    def _finished(self, job: _Job, task: asyncio.Task[Any]) -> None:
        """Work task ended: free its slots, record exactly one outcome, start the next job."""
        if job.timer is not None:
            job.timer.cancel()
        self._owners[job.owner].running.discard(job)
        self._running -= 1
        self._forget(job.owner)
        exc = None if task.cancelled() else task.exception()
        if job.reason == "timeout":
            self._close(job, error=JobTimeout(job.timeout))
        elif job.reason is not None or task.cancelled():
            self._close(job, error=Cancelled())
        elif exc is not None:
            self._close(job, error=exc)
        else:
            self._close(job, result=task.result())
        self._pump()

    def _cancel(self, job: _Job, reason: _Reason) -> bool:
        """Remove a waiting job or cancel a running one; False if it is already ending."""
        if job.done:
            return False
        if job.task is None:
            self._dequeue(job)
            self._close(job, error=Cancelled())
            return True
        if job.task.done() or job.reason is not None:
            return False
        job.reason = reason
        job.task.cancel()
        return True

    def _dequeue(self, job: _Job) -> None:
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

    def _close(self, job: _Job, *, result: Any = None, error: BaseException | None = None) -> None:
        """Record the job's one outcome and wake its run() call."""
        job.done, job.result, job.error = True, result, error
        del self._jobs[job.id]
        key = error.key if isinstance(error, BotError) else "error.internal"
        self._emit(job, "finished" if error is None else "failed", key=None if error is None else key)
        job.wake.set()

    def _emit(self, job: _Job, stage: ProgressStage, *, key: str | None = None) -> None:
        """Queue a progress event for the job's caller; consecutive positions coalesce."""
        if not job.notify:
            return
        event = Progress(job.id, stage, job.position if stage == "queued" else None,
                         self._clock() - job.submitted, key)
        if stage == "queued" and job.events and job.events[-1].stage == "queued":
            job.events[-1] = event
        else:
            job.events.append(event)
        job.wake.set()

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


async def _call(work: Callable[[], Awaitable[T]]) -> T:
    """Await the work inside its own task."""
    return await work()


async def _notify(callback: ProgressCallback, event: Progress) -> None:
    """Deliver one progress event; a failing or hanging callback is logged, never fatal."""
    try:
        async with asyncio.timeout(CALLBACK_TIMEOUT):
            await callback(event)
    except Exception:
        log.exception("progress callback failed (job %s, %s)", event.job_id, event.stage)
