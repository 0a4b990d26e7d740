"""One reader's side of the hub: its queue, and the direct write that bypasses it.

A caught-up SSE reader hands the hub its socket ("direct mode"): the hub then
writes each live event to it with one non-blocking `send` of bytes encoded
once for every reader (SSE frame and HTTP chunk framing), so a token costs a
reader one syscall, not a greenlet switch, a queue, a generator and
gunicorn's writer. Anything the hub cannot write at once (a full socket, a
gap in seq, the terminal event, a broken connection) ends direct mode: the
item goes to the reader's queue and the reader's own greenlet takes over, as
for every reader that is not caught up.

Bounded either way: a full queue (in items or in bytes) switches the reader
to catching up from the log, once; what it held is dropped and nothing more
is offered until the reader resets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent.event
import gevent.queue

from spool.events import LogEntry, decode_entry
from webapp.sse import entry_frame, http_chunk

READER_QUEUE_SIZE = 512  # items buffered per reader before it must re-read the log
# ...or this much memory held for it: an item can be a whole burst of events
# (see Hub._dispatch), and events can be large (tool-call arguments), so
# counting items alone let one stalled reader pin tens of MB.
READER_QUEUE_BYTES = 256 * 1024
LIVE_COPIES = 3  # a Live holds its entry three times: raw, SSE frame, HTTP chunk
LIVE_OVERHEAD = 200  # bytes of a Live's objects beyond those strings


@dataclass(frozen=True, slots=True)
class Direct:
    """A reader's connection as the hub writes to it: the raw non-blocking
    socket, and the cooperative `sendall` its own greenlet uses."""

    raw: Any
    sendall: Callable[[bytes], Any]


class Gap:
    """Queue marker: messages may have been missed (or the hub gave up a direct
    write); re-read the log."""


GAP = Gap()


@dataclass(frozen=True, slots=True)
class Live:
    """A live message, decoded once for all readers."""

    seq: int
    frame: bytes
    terminal: bool
    raw: bytes  # the published log entry, for readers that re-encode it (the facade)
    chunk: bytes  # `frame` as one HTTP/1.1 chunk, for direct writes

    def entry(self) -> LogEntry:
        """The message as a log entry."""
        return decode_entry(self.raw.decode())


_TERMINAL = frozenset({b"done", b"error", b"cancelled"})

# What a reader's queue holds: one live event, the events of one published
# message (a worker tick's entries of one generation), or a gap marker.
Item = Live | tuple[Live, ...] | Gap


def held_bytes(raw_bytes: int, events: int) -> int:
    """About the memory `events` live events of `raw_bytes` published bytes hold."""
    return LIVE_COPIES * raw_bytes + LIVE_OVERHEAD * events


def weight(item: Item) -> int:
    """About what holding `item` costs in memory, in bytes (its share of the queue bound).

    The hub computes the same from the published lengths it has at hand."""
    if isinstance(item, Gap):
        return 0
    events = (item,) if isinstance(item, Live) else item
    return held_bytes(sum(len(e.raw) for e in events), len(events))


def live(raw: bytes) -> Live:
    """Decode one published log entry (`"<seq> <event> <json>"`)."""
    seq, name, data = raw.split(b" ", 2)
    frame = entry_frame(seq, name, data)
    return Live(int(seq), frame, name in _TERMINAL, raw, http_chunk(frame))


class Mailbox:
    """A reader's queue: `gevent.queue.Queue`'s get/put, in a fraction of its memory.

    A gevent Queue costs about 2.7 KB even when empty (three deques and its
    bookkeeping); a list and an Event cost a few hundred bytes, which counts
    with thousands of idle or stalled readers per process. One reader waits
    on it; only the hub puts.
    """

    __slots__ = ("_items", "_ready", "_weights", "held")

    def __init__(self) -> None:
        self._items: list[Item] = []
        self._weights: list[int] = []
        self.held = 0  # the items' weight (see `weight`)
        self._ready = gevent.event.Event()

    def qsize(self) -> int:
        """Items waiting."""
        return len(self._items)

    def put_nowait(self, item: Item, weight: int = 0) -> None:
        """Add an item (`weight`: its memory, counted in `held`) and wake the reader."""
        self._items.append(item)
        self._weights.append(weight)
        self.held += weight
        self._ready.set()

    def get_nowait(self) -> Item:
        """The oldest item; gevent.queue.Empty if there is none."""
        if not self._items:
            raise gevent.queue.Empty
        item = self._items.pop(0)
        self.held -= self._weights.pop(0)
        if not self._items:
            self._ready.clear()
        return item

    def get(self, timeout: float | None = None) -> Item:
        """The oldest item, waiting up to `timeout` s for one (then gevent.queue.Empty)."""
        if not self._items:
            self._ready.wait(timeout)
        return self.get_nowait()

    def clear(self) -> None:
        """Drop every item."""
        self._items.clear()
        self._weights.clear()
        self.held = 0
        self._ready.clear()


class Subscription:
    """One reader's view of one channel."""

    __slots__ = ("broken", "channel", "direct", "last", "limit", "overflowed", "pending", "queue")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.queue = Mailbox()  # bounded by `offer`
        self.overflowed = False
        self.direct: Any = None  # the raw socket while the hub writes for the reader
        self.last = 0  # the last seq written directly
        self.pending = b""  # the unsent rest of a partial direct write
        self.broken = False  # a direct write failed: the client is gone
        self.limit = READER_QUEUE_BYTES  # the queue's bound in bytes (see `tighten`)

    def offer(self, item: Item, size: int = 0) -> None:
        """Hand over an item (`size`: its `weight`) without ever blocking the hub."""
        if self.overflowed:
            return
        if self.direct is not None and not isinstance(item, Gap) and self._write(item):
            return
        queue = self.queue
        waiting = queue.qsize()
        # One item always fits an empty queue: its reader takes it next.
        if waiting >= READER_QUEUE_SIZE or (waiting and queue.held + size > self.limit):
            self.overflowed = True
            queue.clear()
            queue.put_nowait(GAP)  # wakes a waiting reader; it re-reads the log
            return
        queue.put_nowait(item, size)

    def _write(self, item: Live | tuple[Live, ...]) -> bool:
        """Write `item` straight to the reader's socket; False to queue it instead."""
        last = self.last
        chunks = []
        for event in (item,) if isinstance(item, Live) else item:
            if event.seq <= last:
                continue
            if event.seq != last + 1 or event.terminal:
                self.direct = None  # the reader's greenlet sorts out gaps and the end
                return False
            chunks.append(event.chunk)
            last = event.seq
        if not chunks:
            return True
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            sent = self.direct.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.direct = None
            self.broken = True
            self.queue.put_nowait(GAP)  # wake the reader so it ends
            return True
        if sent == len(data):
            self.last = last
            return True
        self.direct = None
        if sent == 0:
            return False  # nothing went out: the reader's greenlet writes it
        # Part of a chunk is on the wire: the reader must send the rest first.
        self.pending = data[sent:]
        self.last = last
        self.queue.put_nowait(GAP)
        return True

    def start_direct(self, sock: Any, last: int) -> None:
        """Let the hub write live events after `last` to `sock` (raw, non-blocking)."""
        self.last = last
        self.direct = sock

    def stop_direct(self) -> tuple[int, bytes]:
        """Take writing back: the last seq written and the bytes still to send."""
        self.direct = None
        pending, self.pending = self.pending, b""
        return self.last, pending

    def tighten(self, limit: int) -> None:
        """Bound the queue at `limit` bytes for now (the reader waits on a slow client)."""
        self.limit = limit
        if self.queue.held > limit:
            self.hold_off()

    def loosen(self) -> None:
        """Back to the usual bound."""
        self.limit = READER_QUEUE_BYTES

    def hold_off(self) -> None:
        """Take nothing more until `reset`: the reader waits on a client that
        stopped reading, and the log holds what it misses meanwhile."""
        self.overflowed = True
        self.queue.clear()

    def reset(self) -> None:
        """Drop buffered items; the reader is about to re-read the log."""
        self.queue.clear()
        self.overflowed = False
