"""The idle timeout of a provider stream: one watchdog per stream, not a timer per piece.

A `gevent.Timeout` per piece cost a timer object, a start and a cancel for
every token. The watchdog instead notes when the current read began (one
clock read per piece) and keeps a single timer pending per stream; when it
fires it re-arms itself for the rest of the idle time, or, if the current
read has been waiting for the whole idle time, raises its `error` in the
reading greenlet (as `gevent.Timeout` does).

Each re-arm is a fresh timer: a cancelled `gevent.Timeout` started again
keeps its first deadline (gevent 26), which once ended every answer that
streamed for longer than the idle timeout, however steadily it arrived.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import gevent


class IdleWatch:
    """Times each `read` of one stream, in the greenlet that created it."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        # Raised in the reader on expiry: a BaseException (gevent.Timeout), so
        # no adapter's `except Exception` can swallow it. Never started itself.
        self.error = gevent.Timeout(idle_s)
        self._greenlet = gevent.getcurrent()
        self._loop = gevent.get_hub().loop
        self._since = 0.0  # when the current read began
        self._reading = False
        self._timer: Any = None
        self._arm(idle_s)

    def read(self, pieces: Iterator[Any]) -> Any:
        """`next(pieces, None)`, raising `error` after `idle_s` without a piece."""
        self._since = time.monotonic()
        self._reading = True
        try:
            return next(pieces, None)
        finally:
            self._reading = False

    def close(self) -> None:
        """Stop watching (idempotent); call when the stream ends, however it ends."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.stop()
            timer.close()

    def _arm(self, seconds: float) -> None:
        timer = self._loop.timer(max(seconds, 0.0))
        timer.start(self._check)
        self._timer = timer

    def _check(self) -> None:
        timer, self._timer = self._timer, None
        if timer is None:
            return  # closed meanwhile
        timer.close()
        if self._greenlet.dead:
            return
        if not self._reading:
            self._arm(self.idle_s)  # the reader is busy elsewhere: not the provider's silence
            return
        left = self._since + self.idle_s - time.monotonic()
        if left > 0:
            self._arm(left)
            return
        self._greenlet.throw(self.error)
