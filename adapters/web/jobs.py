"""Browser jobs: each request runs as a background task; its page hears of it by server push.

A result counts as delivered once the core has stored it, because the page fetches the images
from the core's blob store: the adapter binds (settles) right away, or reports it undeliverable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from bot.api import BotApi, Capabilities, MessageRef, Progress, Reply
from bot.errors import BotError, Cancelled, InternalError

log = logging.getLogger(__name__)

#: Finished jobs stay readable this long (a page that polls late still gets its answer).
KEEP_SECONDS = 900.0
#: Changes queued for one open page before further ones are dropped (it resyncs on reconnect).
LISTEN_BACKLOG = 64

#: The page shows images from the core's store as they are: nothing to fit, nothing to upload.
WEB = Capabilities(caption_limit=4096, photo_budget=None)

Start = Callable[[Callable[[Progress], Awaitable[None]]], Awaitable[Reply]]


@dataclass(slots=True)
class WebJob:
    """One browser request and what the page needs to show about it."""

    id: str
    owner: str
    label: str
    locale: str
    created: float
    chat_id: str = ""
    kind: str = "imagine"
    stage: str = "waiting"
    position: int | None = None
    started: float | None = None
    reply: Reply | None = None
    finished: float | None = None

    @property
    def done(self) -> bool:
        """True once there is a reply (a result or an error)."""
        return self.reply is not None

    def elapsed(self, now: float) -> int:
        """Whole seconds since the job started running (or was submitted, while waiting)."""
        return int((self.finished or now) - (self.started or self.created))


class WebJobs:
    """Runs and remembers the console's jobs."""

    def __init__(self, api: BotApi, clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._clock = clock
        self._jobs: dict[str, WebJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: dict[str, set[asyncio.Queue[WebJob]]] = {}

    def get(self, job_id: str, owner: str) -> WebJob | None:
        """A job of ``owner`` by id (None for anyone else's)."""
        job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    def active(self, owner: str) -> int:
        """How many of ``owner``'s jobs are unfinished."""
        return sum(1 for j in self._jobs.values() if j.owner == owner and not j.done)

    def running(self) -> list[WebJob]:
        """Every unfinished job, oldest first."""
        return sorted((j for j in self._jobs.values() if not j.done), key=lambda j: j.created)

    def of_chat(self, chat_id: str) -> list[WebJob]:
        """A browser's jobs still remembered (unfinished and recently finished), oldest first."""
        return sorted((j for j in self._jobs.values() if j.chat_id == chat_id),
                      key=lambda j: j.created)

    @contextlib.contextmanager
    def listen(self, chat_id: str) -> Iterator[asyncio.Queue[WebJob]]:
        """A queue that receives each change of ``chat_id``'s jobs while the block runs."""
        queue: asyncio.Queue[WebJob] = asyncio.Queue(maxsize=LISTEN_BACKLOG)
        self._listeners.setdefault(chat_id, set()).add(queue)
        try:
            yield queue
        finally:
            found = self._listeners.get(chat_id)
            if found is not None:
                found.discard(queue)
                if not found:
                    del self._listeners[chat_id]

    def _notify(self, job: WebJob) -> None:
        for queue in self._listeners.get(job.chat_id, ()):
            with contextlib.suppress(asyncio.QueueFull):  # a stalled page resyncs on reconnect
                queue.put_nowait(job)

    def submit(self, owner: str, chat_id: str, label: str, locale: str, start: Start,
               kind: str = "imagine") -> WebJob:
        """Start ``start(progress)`` in the background and return its job."""
        self._purge()
        job = WebJob(secrets.token_urlsafe(12), owner, label, locale, self._clock(), chat_id, kind)
        self._jobs[job.id] = job
        task = asyncio.create_task(self._run(job, chat_id, start), name=f"web:job:{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: WebJob, chat_id: str, start: Start) -> None:
        async def progress(event: Progress) -> None:
            job.stage, job.position = event.stage, event.position
            if event.stage == "started" and job.started is None:
                job.started = self._clock()
            self._notify(job)

        try:
            reply = await start(progress)
            if reply.turn_id is not None and reply.images:
                try:
                    # The page fetches the images from the core's store: stored is delivered.
                    async with self._api.delivery(reply, WEB) as out:
                        await out.sent([MessageRef("web", chat_id, reply.turn_id)])
                except Exception:
                    log.exception("web: could not record result %s", reply.turn_id)
                    reply = self._failure(job, InternalError())
            job.reply = reply
        except asyncio.CancelledError:
            job.reply = self._failure(job, Cancelled())
            raise
        except Exception:
            log.exception("web: job %s failed", job.id)
            job.reply = self._failure(job, InternalError())
        finally:
            job.finished = self._clock()
            job.stage = "finished" if job.reply and job.reply.ok else "failed"
            self._notify(job)

    def _failure(self, job: WebJob, err: BotError) -> Reply:
        text = self._api.error_text(job.locale, err)
        return Reply(text=text, error=err.key, locale=job.locale)

    def _purge(self) -> None:
        now = self._clock()
        for job_id in [j.id for j in self._jobs.values()
                       if j.finished is not None and now - j.finished > KEEP_SECONDS]:
            del self._jobs[job_id]

    async def close(self, grace: float) -> None:
        """Let running jobs finish for up to ``grace`` seconds, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
