"""Work handed to a thread, which a cancel or a timeout cannot outrun.

A thread cannot be stopped: a job cancelled (timeout, /cancel, shutdown) while its answer is
parsed or its image fitted in a thread still holds those bytes until the thread returns. If the
cancel went through at once, the job's lease on the delivery budget (bot/budget.py) would be
given back while the memory is still in use, and under overload the budget would stop bounding
RSS. :func:`run_sync` therefore lets the cancel through only once the thread is done (a few
milliseconds to a second: these are single parse, decode and encode calls).

:func:`parsing` orders that work: an answer's JSON, base64 and image checks hold the GIL, so a
burst of answers parsed all at once finish together, late; parsed a few at a time in arrival
order, the first ones are done early and the last no later. :func:`waiting` lends the slot
out while a parse waits on the network (an image URL's download, an SDK call). :func:`quick`
reads an answer's body holding the slot while the bytes are already there (loopback, a fast
link: forty bodies read at once all finished late in a burst) and lends it out once the read
is seen to wait on the network.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Generic, TypeVar, cast

__all__ = ["LEND_AFTER", "PARSERS", "parsing", "quick", "run_sync", "waiting"]

T = TypeVar("T")


class _Call(Generic[T]):
    """``fn(*args)`` for a pool thread, which a cancel may drop while it has not started."""

    __slots__ = ("_args", "_context", "_fn", "_lock", "state")

    def __init__(self, fn: Callable[..., T], args: tuple[object, ...]) -> None:
        self._fn, self._args = fn, args
        self._context = contextvars.copy_context()
        self._lock = threading.Lock()
        self.state = "queued"  # -> "running" (a thread took it) | "dropped" (cancelled first)

    def __call__(self) -> T | None:
        with self._lock:
            if self.state == "dropped":
                return None
            self.state = "running"
        return self._context.run(self._fn, *self._args)

    def drop(self) -> bool:
        """Drop it if no thread took it yet; False when it is running or done."""
        with self._lock:
            if self.state == "queued":
                self.state = "dropped"
            return self.state == "dropped"


async def run_sync(fn: Callable[..., T], /, *args: object,
                   executor: Executor | None = None) -> T:
    """``fn(*args)`` in ``executor`` (the loop's default pool); a cancel waits for it to end."""
    call: _Call[T] = _Call(fn, args)
    future = asyncio.get_running_loop().run_in_executor(executor, call)
    try:
        return cast(T, await asyncio.shield(future))  # None only when dropped
    except asyncio.CancelledError:
        if not call.drop():
            while not future.done():  # however often we are cancelled meanwhile
                try:
                    await asyncio.wait({future})
                except asyncio.CancelledError:
                    continue
        raise


#: Answers whose CPU work (JSON, base64, image checks) runs at once. More only interleave: in
#: a burst every answer then finishes late, where in arrival order the first finish early.
PARSERS = os.cpu_count() or 2


class _Slot:
    """One parse slot taken by a task (and the tasks it starts)."""

    __slots__ = ("gate", "held")

    def __init__(self, gate: asyncio.Semaphore) -> None:
        self.gate = gate
        self.held = False


_SLOT: ContextVar[_Slot | None] = ContextVar("imagine_parse_slot", default=None)
_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary())


@asynccontextmanager
async def parsing() -> AsyncIterator[None]:
    """Parse one answer holding a slot, in arrival order; nested: the outer slot is kept."""
    if _SLOT.get() is not None:
        yield
        return
    loop = asyncio.get_running_loop()
    gate = _GATES.get(loop) or _GATES.setdefault(loop, asyncio.Semaphore(PARSERS))
    slot = _Slot(gate)
    token = _SLOT.set(slot)
    try:
        await gate.acquire()
        slot.held = True
        yield
    finally:
        _SLOT.reset(token)
        if slot.held:
            slot.held = False
            gate.release()


@asynccontextmanager
async def waiting() -> AsyncIterator[None]:
    """Network waits inside :func:`parsing` (an image URL's download): the slot is lent out."""
    slot = _SLOT.get()
    if slot is None or not slot.held:
        yield
        return
    slot.held = False
    slot.gate.release()
    try:
        yield
    finally:
        await slot.gate.acquire()
        slot.held = True


#: A read still going after this long waits on the network, not the CPU: its slot is lent out.
#: Bytes already received take a few milliseconds (a 1.6 MB answer: 2-5 ms on loopback).
LEND_AFTER = 0.02


async def quick(work: Awaitable[T], lend_after: float = LEND_AFTER) -> T:
    """``work`` (an answer's read) holding the parse slot for ``lend_after``, then lending it."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=lend_after)
        if not done:
            async with waiting():
                await asyncio.wait({task})
        return task.result()
    finally:
        if not task.done():  # we were cancelled: so is the read, which ends before we do
            task.cancel()
            await asyncio.wait({task})
