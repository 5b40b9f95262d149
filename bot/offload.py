"""Work handed to a thread, which a cancel or a timeout cannot outrun.

A thread cannot be stopped: a job cancelled (timeout, /cancel, shutdown) while its answer is
parsed or its image fitted in a thread still holds those bytes until the thread returns. If the
cancel went through at once, the job's lease on the delivery budget (bot/budget.py) would be
given back while the memory is still in use, and under overload the budget would stop bounding
RSS. :func:`run_sync` therefore lets the cancel through only once the thread is done (a few
milliseconds to a second: these are single parse, decode and encode calls).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar, cast

__all__ = ["run_sync"]

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
