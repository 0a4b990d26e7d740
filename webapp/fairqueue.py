"""A connection pool queue that serves waiting greenlets in arrival order.

redis-py's `BlockingConnectionPool` keeps its free connections in a
`queue.LifoQueue`. Under gevent a returned connection wakes the first
waiter, but the greenlet that returned it keeps running, and if it asks
again before the woken one gets its turn (a reader catching up from the
log does, page after page), it takes the connection back. Measured: with
1,000 readers catching up on one hot answer, a new stream's opening waited
15 to 22 s for a readers'-pool connection while POSTs, /healthz and JSON GETs
on the other pool answered in milliseconds. Here a returned connection is
handed to the longest waiter directly; nobody can take it in between.

The web process only: it waits with gevent primitives.
"""

from __future__ import annotations

import queue
from collections import deque
from typing import Any

import gevent
import gevent.event


class FairLifoQueue:
    """What `BlockingConnectionPool` uses of `queue.LifoQueue`, first come first served.

    Free items are reused last-in first-out (a warm connection before an
    unopened slot, as redis-py expects); waiters get items in arrival order.
    """

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self.queue: list[Any] = []  # free items (redis-py reads this attribute)
        self._waiters: deque[gevent.event.AsyncResult] = deque()

    def qsize(self) -> int:
        """Free items."""
        return len(self.queue)

    def put_nowait(self, item: Any) -> None:
        """Hand `item` to the longest waiter, or keep it (queue.Full past maxsize)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.ready():
                waiter.set(item)
                return
        if self.maxsize and len(self.queue) >= self.maxsize:
            raise queue.Full
        self.queue.append(item)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """As put_nowait (a pool never puts more than it made)."""
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        """A free item, or queue.Empty."""
        return self.get(block=False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """A free item; else wait in line up to `timeout` s (queue.Empty after)."""
        if self.queue and not self._waiters:
            return self.queue.pop()
        if not block:
            raise queue.Empty
        waiter = gevent.event.AsyncResult()
        self._waiters.append(waiter)
        try:
            return waiter.get(timeout=timeout)
        except gevent.Timeout:
            if waiter.ready():  # handed an item as the timer fired
                return waiter.get()
            self._waiters.remove(waiter)
            raise queue.Empty from None
