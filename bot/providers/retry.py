"""The retry policy every wire API shares: how often, how long, and when to give up.

A call raises :class:`TransientError` for what may succeed if tried again (the wire's failure
classification decides which: :mod:`bot.providers.wire.http_errors`); the policy retries it with
exponential backoff and equal jitter. A server hint wins over the backoff; a hint longer than
``retry_cap_seconds`` is not waited for: the job fails at once with "busy, try again in N s".
A timeout that outlasts every retry is the job's timeout. Anything else passes through at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeVar

from bot.config import ProviderSection
from bot.errors import JobTimeout, ModelUnavailable, UpstreamBusy

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
#: A cap on retries for this call (bot.failover sets it when another route can take the job).
RETRY_CAP: ContextVar[int | None] = ContextVar("retry_cap", default=None)


class TransientError(Exception):
    """A failure worth retrying (rate limit, overload, timeout, dropped connection)."""

    def __init__(self, detail: str, *, retry_after: float | None = None,
                 timeout: bool = False, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.timeout = timeout
        self.status = status


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry; ``sleep`` and ``jitter`` are injectable for tests."""

    max_retries: int = 3
    cap_seconds: float = 30.0
    base_seconds: float = 1.0
    sleep: Sleep = field(default=asyncio.sleep)
    jitter: Callable[[], float] = field(default=random.random)
    #: Called once per retry actually made (the ``imagine_upstream_retries_total`` counter).
    on_retry: Callable[[], None] | None = None

    @classmethod
    def from_section(cls, section: ProviderSection, *, sleep: Sleep = asyncio.sleep,
                     on_retry: Callable[[], None] | None = None) -> RetryPolicy:
        """The policy a ``[providers.NAME]`` table asks for."""
        return cls(max_retries=section.max_retries, cap_seconds=section.retry_cap_seconds,
                   sleep=sleep, on_retry=on_retry)

    def backoff(self, attempt: int) -> float:
        """Exponential delay before retry ``attempt`` (0-based), capped, with equal jitter."""
        delay = min(self.cap_seconds, self.base_seconds * 2.0 ** attempt)
        return delay / 2 + delay / 2 * self.jitter()

    async def run(self, call: Callable[[], Awaitable[T]], *, job_seconds: float,
                  what: str = "", model: str = "") -> T:
        """Await ``call()``, retrying :class:`TransientError`; raise a bot error when done."""
        last: TransientError | None = None
        cap = RETRY_CAP.get()
        retries = self.max_retries if cap is None else min(cap, self.max_retries)
        for attempt in range(retries + 1):
            try:
                return await call()
            except TransientError as exc:
                last = exc
            except ModelUnavailable as exc:
                # An operator's problem, not the user's: say which model on which route.
                log.error("%s: the route does not serve this model (%s); check the model's id "
                          "for this route, or `imagine-bot models --online`", what, exc.detail)
                if model:
                    exc.params["model"] = model
                raise
            hint = last.retry_after
            if hint is not None and hint > self.cap_seconds:
                log.warning("%s: %s; server asks to wait %.0f s (> cap %.0f s), giving up",
                            what, last.detail, hint, self.cap_seconds)
                raise UpstreamBusy(retry_after=max(1.0, hint), detail=last.detail)
            if attempt == retries:
                break
            delay = hint if hint is not None else self.backoff(attempt)
            log.warning("%s: %s; retry %d/%d in %.1f s", what, last.detail, attempt + 1,
                        retries, delay)
            if self.on_retry is not None:
                self.on_retry()
            await self.sleep(delay)
        assert last is not None
        if last.timeout:
            raise JobTimeout(job_seconds)
        wait = last.retry_after if last.retry_after is not None else self.backoff(self.max_retries)
        raise UpstreamBusy(retry_after=max(1.0, wait), detail=last.detail)
