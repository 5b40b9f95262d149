"""Admission shared by many processes through Redis; each job still runs where it was received.

The process that received a job holds what only it can use (the progress message, the
interaction), so the job runs there; what is shared is *admission*: the waiting jobs, running
counts per owner and in all, and the owners' rotation live in Redis, so the per-user and global
limits and round-robin fairness hold across processes and queue positions stay true. Queues
like arq, taskiq or Streams consumer groups hand work to whichever worker asks; none admits
per-owner round-robin across processes, so every grant is one small atomic Lua script
(bot/scheduler_lua.py). A grant for a job of another process is published on that process's
channel (one pub/sub connection per process). A process whose lease key lapsed has its waiting
jobs dropped and its slots freed by whichever sweep runs first (one atomic script: exactly
once); its reservations are refunded by the store's own lease logic (bot/instance.py), and
the jobs it had waiting are made again by another process from their tickets (bot/handoff.py).

Client: redis-py's asyncio API (https://redis.readthedocs.io/en/stable/examples/asyncio_examples.html);
scripts by EVALSHA through ``register_script`` (https://redis.io/docs/latest/develop/programmability/eval-intro/).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot import scheduler_lua as lua
from bot.errors import ConfigError, QueueFull, TooManyWaiting
from bot.jobs import SchedulerStats
from bot.jobs_local import STOP_TIMEOUT, Job, LocalRuns, ProgressCallback

__all__ = ["RedisScheduler"]

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Refresh positions and counts at most this often while the queue changes.
REFRESH_EVERY = 0.1


class RedisScheduler(LocalRuns):
    """Global and per-owner limits, round-robin and positions across processes (Redis)."""

    def __init__(self, redis: Redis, *, process: str, prefix: str, global_concurrency: int,
                 per_user_concurrency: int = 1, per_user_queued: int = 1, queue_size: int = 200,
                 lease_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self._redis = redis
        self.process = process
        self._p = prefix
        self._limits = (global_concurrency, per_user_concurrency, per_user_queued, queue_size)
        self._lease = lease_seconds
        self._scripts = {name: redis.register_script(code) for name, code in (
            ("admit", lua.ADMIT), ("remove", lua.REMOVE), ("sweep", lua.SWEEP),
            ("beat", lua.BEAT), ("state", lua.STATE))}
        self._stats = SchedulerStats(queued=0, running=0, by_owner={})
        self._background: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._heart: asyncio.Task[None] | None = None
        self._dirty = asyncio.Event()
        self._beaten = False

    async def _call(self, name: str, *args: str | int | float) -> Any:
        return await self._scripts[name](args=[self._p, *args])

    # ----- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Take the lease, subscribe to this process's channel, start the heartbeat."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await self.beat()
            await pubsub.subscribe(f"{self._p}ch:{self.process}", f"{self._p}ch:all")
        except (RedisError, OSError) as exc:
            raise ConfigError(f"[redis] url: Redis does not answer ({type(exc).__name__}: "
                              f"{exc})") from None
        self._listener = asyncio.create_task(self._listen(pubsub), name="scheduler:listen")
        self._heart = asyncio.create_task(self._beat(), name="scheduler:beat")
        self._dirty.set()

    async def aclose(self) -> None:
        """Stop listening, give the lease up and free anything still registered."""
        for task in (self._listener, self._heart, *self._background):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._listener, self._heart, *self._background)
                               if t is not None), return_exceptions=True)
        with contextlib.suppress(RedisError):
            await self._redis.delete(f"{self._p}alive:{self.process}")
            await self._call("sweep", self._limits[0], self._limits[1])  # ourselves, quietly
        await self._redis.aclose()

    async def beat(self) -> None:
        """Renew the lease; if another process had swept us away, our waiting jobs are gone."""
        swept = await self._call("beat", self.process, int(self._lease * 1000))
        if swept and self._beaten:
            log.warning("scheduler: this process's lease had lapsed; its waiting jobs were "
                        "dropped by another process")
            for job in [j for j in self._jobs.values() if j.task is None]:
                self._close(job, error=QueueFull())
        self._beaten = True
        waiting = [j.id for j in self._jobs.values() if j.task is None]
        if waiting:  # a grant published while pub/sub was reconnecting is not lost for good
            records = await self._redis.hmget(f"{self._p}jobs", waiting)
            for job_id, record in zip(waiting, records, strict=True):
                if record and str(record).endswith("\tr"):
                    self._grant(job_id)

    async def sweep(self) -> int:
        """Free what processes whose lease lapsed held; how many such processes were found."""
        out = await self._call("sweep", self._limits[0], self._limits[1])
        self._granted_here(out[1:])
        if out[0]:
            log.warning("scheduler: freed the queue and slots of %d stopped process(es)", out[0])
        return int(out[0])

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                await self.beat()
                await self.sweep()
            except RedisError as exc:
                log.warning("scheduler: heartbeat failed (%s); trying again", exc)

    async def _listen(self, pubsub: Any) -> None:
        """Grants for this process, and news that the shared queue changed."""
        refresher = asyncio.create_task(self._refresher(), name="scheduler:refresh")
        try:
            while True:
                try:
                    message = await pubsub.get_message(timeout=None)
                except RedisError as exc:
                    log.warning("scheduler: pub/sub failed (%s); reconnecting", exc)
                    await asyncio.sleep(1.0)
                    continue
                if message is None:
                    continue
                verb, _, arg = str(message["data"]).partition(" ")
                if verb == "grant":
                    self._grant(arg)
                elif verb == "cancel":
                    self.cancel(arg)
                elif verb == "cancel-owner":
                    self._cancel_local_owner(arg)
                self._dirty.set()
        finally:
            refresher.cancel()
            with contextlib.suppress(RedisError):
                await pubsub.aclose()

    async def _refresher(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.refresh()
            except RedisError as exc:
                log.warning("scheduler: could not read the queue (%s)", exc)
            await asyncio.sleep(REFRESH_EVERY)

    async def refresh(self) -> None:
        """Read counts and positions; tell waiting jobs here whose place changed."""
        queued, running, orun, waiting, positions = await self._call("state")
        by_owner = {o: (int(n), 0) for o, n in zip(orun[::2], orun[1::2], strict=True)}
        for owner, n in zip(waiting[::2], waiting[1::2], strict=True):
            by_owner[owner] = (by_owner.get(owner, (0, 0))[0], int(n))
        self._stats = SchedulerStats(queued=int(queued), running=int(running), by_owner=by_owner)
        for job_id, position in zip(positions[::2], positions[1::2], strict=True):
            job = self._jobs.get(job_id)
            if job is not None and job.task is None and job.position != int(position):
                job.position = int(position)
                self._emit(job, "queued")

    # ----- the Scheduler protocol --------------------------------------------------------------

    async def run(self, owner: str, work: Callable[[], Awaitable[T]], *, timeout: float,  # noqa: ASYNC109
                  on_progress: ProgressCallback | None = None, job_id: str | None = None) -> T:
        """Admit ``work`` in Redis, run it here once granted, return or raise its outcome."""
        if not self._accepting:
            raise QueueFull()
        job_id = job_id or secrets.token_hex(8)
        if job_id in self._jobs:
            raise ValueError(f"duplicate job id {job_id!r}")
        job = Job(id=job_id, owner=owner, work=work, timeout=timeout, submitted=self._clock(),
                   notify=on_progress is not None, context=contextvars.copy_context())
        self._jobs[job_id] = job  # before admission: its grant may arrive before the answer
        try:
            verdict = await self._call("admit", job_id, owner, self.process, *self._limits)
        except RedisError as exc:
            self._jobs.pop(job_id, None)
            log.error("scheduler: Redis refused a job (%s); answering busy", exc)
            raise QueueFull() from exc
        except BaseException:  # cancelled while admitted, maybe: take it out again
            if job.task is None:
                self._jobs.pop(job_id, None)
                self._spawn(self._remove(job_id))
            else:
                self._cancel(job, "caller")
            raise
        if verdict[0] != "run" and verdict[0] != "queued":
            self._jobs.pop(job_id, None)
            if verdict[0] == "many":
                raise TooManyWaiting(int(verdict[1]))
            raise QueueFull() if verdict[0] == "full" else ValueError(f"duplicate job {job_id!r}")
        if verdict[0] == "run" and job.task is None:
            self._start(job)
        self._dirty.set()
        return cast(T, await self._wait(job, on_progress))

    def cancel(self, job_id: str) -> bool:
        """Cancel a job here; one of another process is cancelled there (True: asked)."""
        job = self._jobs.get(job_id)
        if job is not None:
            return self._cancel(job, "cancel")
        self._spawn(self._forward_cancel(job_id))
        return True

    def cancel_owner(self, owner: str) -> int:
        """Cancel the owner's jobs here and ask every other process to cancel theirs."""
        self._spawn(self._publish("all", f"cancel-owner {owner}"))
        return self._cancel_local_owner(owner)

    def snapshot(self) -> SchedulerStats:
        """The counts across every process, as last read (refreshed as the queue changes)."""
        return self._stats

    async def drain(self, grace: float) -> None:
        """Refuse new jobs, take ours out of the shared queue, finish or cancel running ones."""
        self._accepting = False
        for job in [j for j in self._jobs.values() if j.task is None]:
            self._cancel(job, "drain")
        await self._settle_background()
        tasks = {j.task for j in self._jobs.values() if j.task is not None}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(grace, 0.0))
            for job in [j for j in self._jobs.values() if j.task in pending]:
                self._cancel(job, "drain")
            if pending:
                _, stuck = await asyncio.wait(pending, timeout=STOP_TIMEOUT)
                if stuck:
                    log.warning("drain: %d job(s) ignored cancellation", len(stuck))
        await self._settle_background()

    # ----- local bookkeeping -------------------------------------------------------------------

    def _grant(self, job_id: str) -> None:
        """Redis granted ``job_id`` a slot: start it, or give the slot back if it is gone."""
        job = self._jobs.get(job_id)
        if job is None or job.done:
            self._spawn(self._remove(job_id))
        elif job.task is None:
            self._start(job)

    def _granted_here(self, grants: list[str]) -> None:
        for proc, job_id in zip(grants[::2], grants[1::2], strict=True):
            if proc == self.process:
                self._grant(job_id)

    def _dequeued(self, job: Job) -> None:
        """A waiting job left: take it out of the shared queue (a slot it just got is freed)."""
        self._spawn(self._remove(job.id))

    def _released(self, job: Job) -> None:
        """A running job ended: free its slots and grant what fits."""
        self._spawn(self._remove(job.id))

    async def _remove(self, job_id: str) -> None:
        for attempt in range(5):
            try:
                out = await self._call("remove", job_id, self._limits[0], self._limits[1])
            except RedisError as exc:
                log.warning("scheduler: could not free job %s (%s)", job_id, exc)
                await asyncio.sleep(0.2 * 2 ** attempt)
                continue
            self._granted_here(out[1:])
            self._dirty.set()
            return
        log.error("scheduler: job %s still holds its slot; the lease sweep frees it", job_id)

    async def _forward_cancel(self, job_id: str) -> None:
        record = await self._redis.hget(f"{self._p}jobs", job_id)
        if record:
            await self._publish(str(record).split("\t", 1)[0], f"cancel {job_id}")

    async def _publish(self, channel: str, message: str) -> None:
        with contextlib.suppress(RedisError):
            await self._redis.publish(f"{self._p}ch:{channel}", message)

    def _cancel_local_owner(self, owner: str) -> int:
        jobs = [j for j in self._jobs.values() if j.owner == owner]
        jobs.sort(key=lambda j: j.task is not None)  # waiting ones first, latest last
        return sum(self._cancel(job, "cancel") for job in jobs)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _settle_background(self) -> None:
        if self._background:
            await asyncio.wait(set(self._background), timeout=STOP_TIMEOUT)

