"""What every console handler is handed: the BotApi, the ``[web]`` settings, the signer and
sessions, the browser jobs (the console's background tasks), and the one error guard.

Browser jobs run as background tasks; their pages hear of each change by server push
(progress.py). A job's reply is a result or the sentence :meth:`Runtime.told` made of its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from aiohttp import web

from adapters.web import inbound
from adapters.web.network import NetworkPolicy
from adapters.web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginLimiter,
    Sessions,
    Signer,
)
from adapters.web.sessions_redis import RedisSessions
from bot.api import (
    Actor,
    BotApi,
    BotError,
    Cancelled,
    InternalError,
    Progress,
    ProgressCallback,
    Reply,
)

log = logging.getLogger(__name__)

#: Finished jobs stay readable this long (a page that polls late still gets its answer).
KEEP_SECONDS = 900.0
#: Changes queued for one open page before further ones are dropped (it resyncs on reconnect).
LISTEN_BACKLOG = 64

#: A job's work: given its progress callback, the reply to show (it may raise; see guard).
Work = Callable[[ProgressCallback], Awaitable[Reply]]


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
    #: The core's last word on it (queue place, running), for its status line.
    event: Progress | None = None
    reply: Reply | None = None
    finished: float | None = None

    @property
    def done(self) -> bool:
        """True once there is a reply (a result or an error)."""
        return self.reply is not None

    def elapsed(self, now: float) -> int:
        """Whole seconds since the job started running (or was submitted, while waiting)."""
        return int((self.finished or now) - (self.started or self.created))


class Runtime:
    """Shared state of one running console."""

    def __init__(self, api: BotApi, *, token: str, secret: bytes,
                 listen_host: str = "127.0.0.1",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.settings = api.settings.web
        self.token = token
        self.secret = secret
        self.signer = Signer(secret)
        self.sessions: Sessions | RedisSessions = Sessions()
        self.limiter = LoginLimiter()
        #: Set when the server starts to stop: open event streams end, new ones are turned away.
        self.closing = asyncio.Event()
        self.route = api.route_label()  # shown on the page, so the operator sees which is live
        self.demo = self.route is None
        self.network = NetworkPolicy.from_settings(api.settings, listen_host)
        self.pooled = self.network.exposed and self.settings.visitor_pool == "address"
        self.max_body = inbound.upload_cap(api)
        if self.settings.visitor_daily_credits is not None:
            api.set_daily_allowance("web:", self.settings.visitor_daily_credits)
        self._clock = clock
        self._jobs: dict[str, WebJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: dict[str, set[asyncio.Queue[WebJob]]] = {}

    # ----- the one error guard ---------------------------------------------------------------

    async def guard(self, actor: Actor, work: Awaitable[Reply]) -> Reply:
        """``work``'s reply, or what ``actor`` is shown for the exception it raised."""
        try:
            return await work
        except Exception as exc:
            return await self.told(actor, exc)

    async def told(self, actor: Actor, exc: Exception, where: str = "job") -> Reply:
        """A BotError as the core words it for ``actor``; anything else as an InternalError
        (logged with its id and ``where`` it happened)."""
        err = exc if isinstance(exc, BotError) else internal(exc, where)
        return await self.api.error_reply(actor, err)

    # ----- requests --------------------------------------------------------------------------

    def body_cap(self, path: str) -> int:
        """The most bytes a request to ``path`` may carry."""
        uploads = (inbound.UPLOAD_PATH, inbound.DESCRIBE_PATH)
        return self.max_body if path in uploads else inbound.MAX_BODY

    def t(self, locale: str, key: str, /, **params: object) -> str:
        """Catalog text."""
        return self.api.t(locale, key, **params)

    async def locale(self, request: web.Request) -> str:
        """The visitor's saved language, else the browser's, else the configured default."""
        return await self.api.locale_for(inbound.actor(request))

    def page_locale(self, request: web.Request) -> str:
        """The browser's language for pages outside the playground (operator view)."""
        return inbound.browser_locale(request) or self.api.settings.bot.locale

    def csrf(self, request: web.Request) -> str:
        """This visitor's CSRF token, for forms and the page's fetch calls."""
        return self.signer.csrf(request[inbound.UID])

    async def csrf_ok(self, request: web.Request) -> bool:
        """A POST carries this visitor's token (header for fetch, field for plain forms)."""
        token = request.headers.get(CSRF_HEADER) or None
        if token is None and request.content_type == "application/x-www-form-urlencoded":
            value = (await request.post()).get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
        return self.signer.csrf_ok(request.get(inbound.UID), token)

    def operator(self, request: web.Request) -> bool:
        """True when the request carries a live operator session."""
        return self.sessions.valid(request.cookies.get(SESSION_COOKIE))

    # ----- browser jobs ----------------------------------------------------------------------

    def job(self, job_id: str, owner: str) -> WebJob | None:
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

    def submit(self, actor: Actor, chat_id: str, label: str, locale: str, work: Work,
               kind: str = "imagine") -> WebJob:
        """Start ``work`` in the background, under the guard, and return its job."""
        self._purge()
        job = WebJob(secrets.token_urlsafe(12), actor.key, label, locale, self._clock(), chat_id,
                     kind)
        self._jobs[job.id] = job
        task = asyncio.create_task(self._run(job, actor, work), name=f"web:job:{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: WebJob, actor: Actor, work: Work) -> None:
        async def progress(event: Progress) -> None:
            job.stage, job.position, job.event = event.stage, event.position, event
            if event.stage == "started" and job.started is None:
                job.started = self._clock()
            self._notify(job)

        try:
            job.reply = await self.guard(actor, work(progress))
        except asyncio.CancelledError:
            # Stopped at shutdown: told in words at once (nothing more is awaited in this task).
            err = Cancelled()
            job.reply = Reply(text=self.api.error_text(job.locale, err), error=err.key,
                              locale=job.locale)
            raise
        finally:
            job.finished = self._clock()
            job.stage = "finished" if job.reply and job.reply.ok else "failed"
            self._notify(job)

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


def internal(exc: BaseException, where: str) -> InternalError:
    """An unexpected exception as the InternalError users see; its id and traceback are logged."""
    err = InternalError()
    log.error("web: %s failed (error %s)", where, err.params["error_id"], exc_info=exc)
    return err
