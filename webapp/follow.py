"""Follow one generation's log: backlog from Redis, then live from the hub, merged by seq.

Shared by the SSE relay and the OpenAI facade so both get the same
guarantees. A reader registers with the hub *before* reading the backlog,
so nothing published meanwhile is missed; live messages at or below what
was yielded are dropped, and a hole in the sequence (or an overflowing
queue, or a hub reconnect) sends the reader back to the log.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import gevent.queue

from spool.events import LogEntry
from spool.log import READ_PAGE
from webapp.hub import Gap, Live
from webapp.services import Services


class Quiet:
    """Yielded when nothing happened for the ping interval (time for a keep-alive)."""


QUIET = Quiet()

Followed = LogEntry | Live | Quiet


def follow(svc: Services, gen_id: str, after: int) -> Iterator[Followed]:
    """Every event with seq > `after`, in order, ending with the terminal event.

    Backlog (and catch-up) entries come as LogEntry, live ones as the hub's
    Live (its frame is encoded once for all readers). Raises HubUnavailable
    on the first `next()` if the hub cannot subscribe, and lets
    redis.RedisError through: the caller decides how a cut stream ends.
    """
    sub = svc.hub.subscribe(svc.keys.channel(gen_id))
    ping_s = svc.settings.ping_interval_s
    last = after
    try:
        while True:
            if sub.overflowed:
                sub.reset()  # before the read, so nothing after it is dropped
            # Paged, so a long log is never one huge read.
            entries = svc.log.read(gen_id, last, READ_PAGE)
            for entry in entries:
                yield entry
                last = entry.seq
                if entry.terminal:
                    return
            if len(entries) == READ_PAGE:
                continue
            quiet_since = time.monotonic()
            while True:
                if sub.overflowed:
                    break
                wait = ping_s - (time.monotonic() - quiet_since)
                try:
                    item = sub.queue.get(timeout=max(wait, 0.0))
                except gevent.queue.Empty:
                    yield QUIET
                    # Also a safety net: re-read in case a message was lost.
                    break
                if isinstance(item, Gap):
                    break
                if item.seq <= last:
                    continue
                if item.seq != last + 1:
                    break
                yield item
                last = item.seq
                quiet_since = time.monotonic()
                if item.terminal:
                    return
    finally:
        svc.hub.unsubscribe(sub)
