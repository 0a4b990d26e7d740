"""Hand freed heap back to the OS after a crowd of connections has closed.

A thousand SSE connections cost ~20 KB each (a greenlet, its saved stack
slices, socket and WSGI objects). When they close, Python frees all of it,
but glibc's allocator keeps the freed pages inside its arenas: measured on
`test_relay_stalled.py`, the web process stayed ~20 MB above its baseline
with every connection already gone. `malloc_trim(0)` returns those pages.
It costs a walk of the heap (a few ms), so it runs once, shortly after many
connections have closed since the last peak, never per connection.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

import gevent

log = logging.getLogger("spool.web")

TRIM_AFTER_CLOSED = 200  # connections closed since the peak that make a trim worth it
TRIM_DELAY_S = 1.0  # let the rest of a closing crowd go first: one trim, not many


def load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """Counts open connections; trims the heap once a crowd of them has closed."""

    def __init__(self, trim: Callable[[int], int] | None = None) -> None:
        self._trim = trim if trim is not None else load_malloc_trim()
        self.open = 0
        self.peak = 0
        self.trims = 0
        self._pending = False

    def opened(self) -> None:
        """A connection was accepted."""
        self.open += 1
        self.peak = max(self.peak, self.open)

    def closed(self) -> None:
        """A connection ended; schedule one trim if enough have ended since the peak."""
        self.open -= 1
        if (self._trim is not None and not self._pending
                and self.peak - self.open >= TRIM_AFTER_CLOSED):
            self._pending = True
            gevent.spawn_later(TRIM_DELAY_S, self.trim_now)

    def trim_now(self) -> None:
        """Return free heap pages to the OS and start counting from here."""
        self._pending = False
        self.peak = self.open
        if self._trim is not None:
            released = self._trim(0)
            self.trims += 1
            log.info("malloc_trim after connections closed (released: %s)", bool(released))
