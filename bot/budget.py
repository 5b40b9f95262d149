"""Back-pressure on result bytes held for delivery: a byte budget that jobs wait on, in order.

A finished job holds its images from the model's answer until the adapter has uploaded them (or
given up). When results arrive faster than they can be fitted and uploaded they pile up, and
memory with them; a job therefore takes a :class:`Lease` on the budget for its result bytes and
gives it back when delivery ends either way. While the budget is spent, the next job waits (first
come, first served) without holding its bytes: they are already in the blob store.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

import httpx

__all__ = ["ANSWER_WEIGHT", "DEFAULT_MAX_HOLD", "EXPECTED_ANSWER", "DeliveryBudget", "Holder", "Lease",
           "answer_hook", "expecting", "reading"]

log = logging.getLogger(__name__)

#: A lease still held after this long was lost by its holder (no bind, no undeliverable):
#: it is given back so that a leak cannot shrink the budget for good. Discord's interaction
#: token lives 15 minutes, the longest any delivery can take.
DEFAULT_MAX_HOLD = 900.0


#: An answer of N bytes is held about four times over while it is read and parsed: the body, the
#: JSON string of its base64, that string cleaned of whitespace, and the decoded image (3/4 N).
#: Measured on the 4K x 500 bench: leasing N alone let RSS reach 2.9 GB on a 256 MB budget.
ANSWER_WEIGHT = 4


class Lease:
    """``size`` bytes held, counted as ``charge`` by a :class:`DeliveryBudget` until released."""

    __slots__ = ("_budget", "_timer", "charge", "size")

    def __init__(self, budget: DeliveryBudget, size: int, charge: int) -> None:
        self._budget: DeliveryBudget | None = budget
        self.size = size
        self.charge = charge
        self._timer: asyncio.TimerHandle | None = None

    @property
    def held(self) -> bool:
        """True until released."""
        return self._budget is not None

    def shrink(self, size: int) -> None:
        """Hold only ``size`` bytes, counted once (the result kept from the answer it came in)."""
        if self._budget is not None and 0 <= size <= self.size and size < self.charge:
            surplus, self.size, self.charge = self.charge - size, size, size
            self._budget._give_back(surplus)

    def cover(self, size: int, weight: int) -> None:
        """Hold at least ``size`` bytes counted ``weight`` times, at once (never waits).

        An answer whose length was not declared is leased on a guess; if it turns out longer,
        the bytes are already in memory: they are counted now, and later acquirers wait longer.
        """
        if self._budget is not None and size > self.size:
            self.size = size
            charge = self._budget._clamp(size * weight)
            if charge > self.charge:
                self._budget._held += charge - self.charge
                self.charge = charge

    def release(self) -> None:
        """Give the bytes back and let waiting jobs in; later calls do nothing."""
        budget, self._budget = self._budget, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if budget is not None:
            budget._give_back(self.charge)

    def _expire(self) -> None:
        self._timer = None
        if self._budget is not None:
            log.warning("a delivery lease of %d bytes was never released; reclaimed", self.charge)
            self.release()


class DeliveryBudget:
    """At most ``capacity`` bytes of results held at once; acquirers wait in arrival order."""

    def __init__(self, capacity: int, *, max_hold: float = DEFAULT_MAX_HOLD) -> None:
        if capacity < 1:
            raise ValueError("the delivery budget must be at least one byte")
        self.capacity = capacity
        self.max_hold = max_hold
        self._held = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def held(self) -> int:
        """Bytes currently leased."""
        return self._held

    @property
    def waiting(self) -> int:
        """Jobs waiting for bytes."""
        return len(self._waiters)

    def try_acquire(self, size: int, *, weight: int = 1) -> Lease | None:
        """A lease at once, or None when the bytes are not free (or others wait before us)."""
        charge = self._clamp(size * weight)
        if self._waiters or self._held + charge > self.capacity:
            return None
        self._held += charge
        return self._lease(size, charge)

    async def acquire(self, size: int, *, weight: int = 1) -> Lease:
        """A lease for ``size`` bytes counted ``weight`` times, waiting in line; cancel-safe.

        A result larger than the whole budget is counted as the whole budget: it goes alone.
        """
        lease = self.try_acquire(size, weight=weight)
        if lease is not None:
            return lease
        charge = self._clamp(size * weight)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (charge, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._held -= charge  # granted just as the wait was cancelled: hand it on
            elif entry in self._waiters:
                self._waiters.remove(entry)
            self._wake()
            raise
        return self._lease(size, charge)

    def _clamp(self, size: int) -> int:
        return min(max(size, 0), self.capacity)

    def _lease(self, size: int, charge: int) -> Lease:
        lease = Lease(self, size, charge)
        if self.max_hold > 0:
            lease._timer = asyncio.get_running_loop().call_later(self.max_hold, lease._expire)
        return lease

    def _give_back(self, size: int) -> None:
        self._held -= size
        self._wake()

    def _wake(self) -> None:
        """Grant waiters from the front while their bytes fit (the order is never jumped)."""
        while self._waiters:
            size, waiter = self._waiters[0]
            if waiter.done():  # cancelled; its acquire() removes it
                self._waiters.popleft()
                continue
            if self._held + size > self.capacity:
                return
            self._waiters.popleft()
            self._held += size
            waiter.set_result(None)


class Holder(Protocol):
    """Whoever keeps a job's lease (the job's pending delivery)."""

    lease: Lease | None


#: What an answer is guessed to weigh when it declares no length (gzip, chunked), by image
#: size: the base64 JSON of a typical PNG (a 4K PNG is about 20-25 MB, a third more as base64).
#: A longer answer is counted as it streams (:meth:`Lease.cover`).
EXPECTED_ANSWER = {"512": 1 << 20, "1K": 2 << 20, "2K": 8 << 20, "4K": 36 << 20}
_EXPECTED: ContextVar[int] = ContextVar("imagine_expected", default=8 << 20)

#: The budget and lease holder of the job whose upstream call runs in this context.
_READING: ContextVar[tuple[DeliveryBudget, Holder] | None] = ContextVar("imagine_reading",
                                                                        default=None)


@contextmanager
def reading(budget: DeliveryBudget, holder: Holder) -> Iterator[None]:
    """Upstream answers read in this context (and tasks it starts) lease from ``budget``."""
    token = _READING.set((budget, holder))
    try:
        yield
    finally:
        _READING.reset(token)


@contextmanager
def expecting(size: str | None) -> Iterator[None]:
    """Answers read in this context without a declared length are guessed at ``size``'s weight."""
    token = _EXPECTED.set(EXPECTED_ANSWER.get(size or "", _EXPECTED.get()))
    try:
        yield
    finally:
        _EXPECTED.reset(token)


class _Counted(httpx.AsyncByteStream):
    """A body that grows its lease when it passes what was leased (an undeclared length)."""

    def __init__(self, inner: httpx.AsyncByteStream, lease: Lease) -> None:
        self._inner = inner
        self._lease = lease

    async def __aiter__(self) -> AsyncIterator[bytes]:
        total = 0
        async for chunk in self._inner:
            total += len(chunk)
            if total > self._lease.size:
                self._lease.cover(total, ANSWER_WEIGHT)
            yield chunk

    async def aclose(self) -> None:
        inner, self._inner = self._inner, _CLOSED  # no cycle back to the Response (http.py)
        await inner.aclose()


_CLOSED = httpx.ByteStream(b"")


async def answer_hook(response: httpx.Response) -> None:
    """httpx response hook: lease an answer's bytes (weighted) before its body is read.

    Event hooks run before a non-streamed body is read
    (https://www.python-httpx.org/advanced/event-hooks/), so under overload answers wait in
    the socket, not in memory. An answer without a declared length (compressed: the cap hook
    decodes it and drops the header; or chunked) is leased on a guess (:func:`expecting`)
    and counted as it streams. Outside a job (see :func:`reading`) it does nothing.
    """
    current = _READING.get()
    if current is None or not isinstance(response.stream, httpx.AsyncByteStream):
        return
    budget, holder = current
    if holder.lease is not None:  # a retried call: the earlier answer is no longer held
        holder.lease.release()
        holder.lease = None
    declared = response.headers.get("content-length", "")
    size = int(declared) if declared.isdigit() else _EXPECTED.get()
    holder.lease = await budget.acquire(size, weight=ANSWER_WEIGHT)
    if not declared.isdigit():
        response.stream = _Counted(response.stream, holder.lease)
