"""Turns: how many calls of one key (a session's execs) run at once in this process.

Calls past the limit wait, first come first served; calls of other keys never wait for
them. A turn ends when the work is done, not when its caller stops waiting: a client
that hangs up leaves its command running in the node, up to its time limit, on one of
the exec threads, and it still counts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Turns:
    """Per-key limits on work in progress, for one event loop's callers."""

    def __init__(self) -> None:
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    def running(self, key: str) -> int:
        return self._running.get(key, 0)

    def waiting(self, key: str) -> int:
        return len(self._waiting.get(key, ()))

    async def run(self, key: str, limit: int, start: Callable[[], Awaitable[T]]) -> T:
        """Wait for one of ``key``'s ``limit`` turns, then await ``start()`` in it.

        Cancelling the caller while it waits gives up its place; once the work has
        started, cancelling stops the wait for its result, and the work goes on to the
        end of its turn.
        """
        await self._take(key, limit)
        try:
            task = asyncio.ensure_future(start())
        except BaseException:
            self._give_back(key)
            raise
        task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    async def _take(self, key: str, limit: int) -> None:
        if self.running(key) < limit and not self.waiting(key):
            self._running[key] = self.running(key) + 1
            return
        waiter = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(key, deque())
        queue.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._give_back(key)  # handed a turn just as the caller went away
            else:
                # A turn given back meanwhile may already have dropped it from the queue.
                if waiter in queue:
                    queue.remove(waiter)
                if not queue and self._waiting.get(key) is queue:
                    del self._waiting[key]
            raise

    def _finished(self, key: str, task: asyncio.Future[T]) -> None:
        self._give_back(key)
        if not task.cancelled():
            task.exception()  # the caller may be gone; the result was still looked at

    def _give_back(self, key: str) -> None:
        """End a turn: hand it to the first caller still waiting, or free it."""
        queue = self._waiting.get(key)
        while queue:
            waiter = queue.popleft()
            if not queue:
                del self._waiting[key]
            if not waiter.done():
                waiter.set_result(None)
                return
        self._running[key] -= 1
        if not self._running[key]:
            del self._running[key]
