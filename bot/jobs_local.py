"""The part of a scheduler that runs admitted jobs in this process: tasks, timeouts, outcomes.

Shared by the in-process scheduler (bot/jobs.py) and the Redis one (bot/scheduler_redis.py);
they differ only in admission, told through :meth:`LocalRuns._dequeued` and
:meth:`LocalRuns._released`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from bot.domain import Progress, ProgressStage
from bot.errors import BotError, Cancelled, JobTimeout

log = logging.getLogger(__name__)
T = TypeVar("T")
ProgressCallback = Callable[[Progress], Awaitable[None]]
Reason = Literal["timeout", "cancel", "drain", "caller"]

#: Longest one progress callback may take; a slower one is abandoned and logged.
CALLBACK_TIMEOUT = 10.0
#: How long drain() waits for cancelled work to actually stop before giving up on it.
STOP_TIMEOUT = 5.0


@dataclass(eq=False, slots=True)
class Job:
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
    reason: Reason | None = None
    done: bool = False
    result: Any = None
    error: BaseException | None = None
    events: deque[Progress] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class LocalRuns:
    """This process's jobs: waiting for their grant, running in their own task, or ended."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._accepting = True

    @property
    def accepting(self) -> bool:
        """False once drain() has started."""
        return self._accepting

    def _dequeued(self, job: Job) -> None:
        """A waiting job left the queue (cancelled)."""
        raise NotImplementedError

    def _released(self, job: Job) -> None:
        """A running job ended: free its slots, start what may start."""
        raise NotImplementedError

    async def _wait(self, job: Job, on_progress: ProgressCallback | None) -> Any:
        """Deliver the job's events until its outcome; return or raise it."""
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
        return job.result

    def position(self, job_id: str) -> int | None:
        """1-based place of a waiting job in the predicted start order; None if not waiting."""
        job = self._jobs.get(job_id)
        return None if job is None or job.task is not None else job.position

    def _start(self, job: Job) -> None:
        """Spawn the work task with its timeout (the slots are already taken)."""
        job.position = None
        self._emit(job, "started")
        loop = asyncio.get_running_loop()
        job.task = loop.create_task(_call(job.work), name=f"job:{job.id}", context=job.context)
        job.task.add_done_callback(lambda task: self._finished(job, task))
        job.timer = loop.call_later(job.timeout, self._expire, job)

    def _expire(self, job: Job) -> None:
        """Timeout: cancel the work task; its run() will raise JobTimeout."""
        job.timer = None
        if job.task is not None and not job.task.done() and job.reason is None:
            job.reason = "timeout"
            job.task.cancel()

    def _finished(self, job: Job, task: asyncio.Task[Any]) -> None:
        """Work task ended: record exactly one outcome, then free its slots."""
        if job.timer is not None:
            job.timer.cancel()
        exc = None if task.cancelled() else task.exception()
        if job.reason == "timeout":
            self._close(job, error=JobTimeout(job.timeout))
        elif job.reason is not None or task.cancelled():
            self._close(job, error=Cancelled())
        elif exc is not None:
            self._close(job, error=exc)
        else:
            self._close(job, result=task.result())
        self._released(job)

    def _cancel(self, job: Job, reason: Reason) -> bool:
        """Remove a waiting job or cancel a running one; False if it is already ending."""
        if job.done:
            return False
        if job.task is None:
            self._dequeued(job)
            self._close(job, error=Cancelled())
            return True
        if job.task.done() or job.reason is not None:
            return False
        job.reason = reason
        job.task.cancel()
        return True

    def _close(self, job: Job, *, result: Any = None, error: BaseException | None = None) -> None:
        """Record the job's one outcome and wake its run() call."""
        job.done, job.result, job.error = True, result, error
        self._jobs.pop(job.id, None)
        key = error.key if isinstance(error, BotError) else "error.internal"
        self._emit(job, "finished" if error is None else "failed", key=None if error is None else key)
        job.wake.set()

    def _emit(self, job: Job, stage: ProgressStage, *, key: str | None = None) -> None:
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
