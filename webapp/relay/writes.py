"""How the relay puts a run of events on the wire, and what it holds when the client stops reading.

A run (a backlog page, or the live events already queued) is joined into
writes of about WRITE_BYTES: one syscall each, not one per token.

On a stream with a direct socket (plain HTTP/1.1, see
`webapp.relay.stream.direct_socket`) the relay sends those writes itself,
chunk-framed, without blocking. When the kernel takes only part of one and
the client has not taken the rest within STALL_GRACE_S (waited out only
while the run held meanwhile is under GRACE_HOLD_BYTES), the client has
stopped reading: the relay keeps the unsent rest of that one write (at most
~WRITE_BYTES), lets go of the page and of its place in the hub, waits until
the rest is sent, then follows the log again from the last event that went
out. A stalled reader then holds one write, not a log page
of up to `follow.PAGE_BYTES` for as long as it stalls: the log is the buffer.

Linux usually queues a whole LLM answer in a socket's send buffer
(`tcp_wmem` autotuning), so this rarely engages; when the buffer did not
grow (seen on a slower host: ~280 KB of web memory per stalled reader of a
250 KB answer) it is what bounds a stalled reader's cost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, NamedTuple

from gevent.socket import wait_write

from spool.events import LogEntry
from webapp import sse
from webapp.relay.hub import Live

WRITE_BYTES = 8192  # a run of events goes out in writes of about this size at most
# A client that is reading, only slower than this process writes (a busy
# machine, a phone), usually drains its socket within this: the relay waits
# for it holding what it has, rather than re-reading the log through the
# readers' pool (where new streams' openings wait their turn).
STALL_GRACE_S = 0.25
# ...but only while what it holds meanwhile is small: a crowd that stalls at
# once, each holding a backlog page (or a queue) through the grace, made a
# transient of ~256 KB per reader that the allocator kept.
GRACE_HOLD_BYTES = 32 * 1024


class Write(NamedTuple):
    """Consecutive events' frames joined, and the last event they carry."""

    data: bytes
    last_seq: int
    terminal: bool


NO_WRITE = Write(b"", 0, False)


def frame(entry: LogEntry) -> bytes:
    """One log entry as an SSE frame."""
    return sse.entry_frame(str(entry.seq).encode(), entry.event.encode(), entry.data.encode())


def writes(batch: list[LogEntry] | list[Live]) -> Iterator[Write]:
    """A run's frames joined into writes of about WRITE_BYTES at most.

    One write per run keeps syscalls few; the cap bounds what a reader that
    stopped reading holds while its write waits (the bytes, and their
    chunk-framed copy), whatever the size of the run.
    """
    parts: list[bytes] = []
    size = 0
    last: LogEntry | Live | None = None
    for item in batch:
        data = frame(item) if isinstance(item, LogEntry) else item.frame
        if parts and last is not None and size + len(data) > WRITE_BYTES:
            yield Write(b"".join(parts), last.seq, last.terminal)
            parts, size = [], 0
        parts.append(data)
        size += len(data)
        last = item
    if parts and last is not None:
        yield Write(b"".join(parts), last.seq, last.terminal)


def send_now(raw: Any, data: bytes) -> bytes:
    """Send what the kernel takes at once on non-blocking socket `raw`; the unsent rest.

    Raises OSError when the client is gone.
    """
    try:
        sent: int = raw.send(data)
    except BlockingIOError:
        return data
    return data[sent:] if sent < len(data) else b""


def wait_out(raw: Any, rest: bytes) -> bytes:
    """Give a client that has not taken `rest` up to STALL_GRACE_S to take it
    (non-blocking `raw`); what is still unsent then. Raises OSError when the client is gone."""
    deadline = time.monotonic() + STALL_GRACE_S
    while rest:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            wait_write(raw.fileno(), timeout=left, timeout_exc=TimeoutError)
        except TimeoutError:
            break
        rest = send_now(raw, rest)
    return rest


def run_bytes(batch: list[LogEntry] | list[Live]) -> int:
    """About what holding a run costs: its events' encoded sizes."""
    return sum(len(item.data) if isinstance(item, LogEntry) else len(item.frame)
               for item in batch)
