"""Follow one generation's log: backlog from Redis, then live from the hub, merged by seq.

Shared by the SSE relay and the facades so all get the same
guarantees. A reader registers with the hub *before* reading the backlog,
so nothing published meanwhile is missed; live messages at or below what
was yielded are dropped, and a hole in the sequence (or an overflowing
queue, or a hub reconnect) sends the reader back to the log.

`follow_batches` hands over runs of consecutive events (a backlog page, or
every live message already queued), so the relay writes each run with one
syscall.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field

import gevent.queue

from spool.events import LogEntry
from spool.log import READ_PAGE
from spool.metrics import RECORDER, STREAMS_DIRECT
from webapp.relay.hub import Gap, Item, Live, Subscription
from webapp.relay.subscription import Direct
from webapp.relay.writes import GRACE_HOLD_BYTES, wait_out
from webapp.services import Services

MAX_LIVE_BATCH = 256  # live events handed over in one run at most
PAGE_BYTES = 256 * 1024  # about the most text one backlog page holds (past its first entry)
CATCH_UP_PAGE = 32  # entries in the first read after a reader fell behind: sizes unknown


class Quiet:
    """Yielded when nothing happened for the ping interval (time for a keep-alive)."""


QUIET = Quiet()

Run = list[LogEntry] | list[Live]


@dataclass
class _LiveRun:
    """Consecutive live events taken from a reader's queue in one go."""

    items: list[Live] = field(default_factory=list)
    ended: bool = False
    reread: bool = False  # a gap (or a hub reconnect): go back to the log


def _take_live(sub: Subscription, item: Item, last: int) -> _LiveRun:
    """`item` plus everything already queued behind it that continues seq `last`."""
    run = _LiveRun()
    while True:
        if isinstance(item, Gap):
            run.reread = True
            return run
        for live in (item,) if isinstance(item, Live) else item:
            if live.seq <= last:
                continue
            if live.seq != last + 1:
                run.reread = True
                return run
            run.items.append(live)
            last = live.seq
            if live.terminal:
                run.ended = True
                return run
        if len(run.items) >= MAX_LIVE_BATCH:
            return run
        try:
            item = sub.queue.get_nowait()
        except gevent.queue.Empty:
            return run


def _until_terminal(entries: list[LogEntry]) -> tuple[list[LogEntry], bool]:
    for index, entry in enumerate(entries):
        if entry.terminal:
            return entries[: index + 1], True
    return entries, False


class _Pager:
    """How many entries the next backlog read asks for.

    READ_PAGE for ordinary tokens; fewer once pages of large events are seen,
    so a page (held while a slow client takes it) stays near PAGE_BYTES.
    """

    __slots__ = ("limit",)

    def __init__(self) -> None:
        self.limit = READ_PAGE

    def learn(self, entries: list[LogEntry]) -> None:
        """Size the next read from the entries just read."""
        size = sum(len(entry.data) for entry in entries)
        self.limit = max(1, min(READ_PAGE, PAGE_BYTES * len(entries) // max(size, 1)))

    def fell_behind(self) -> None:
        """The reader missed live events of unknown size: read a small page first."""
        self.limit = min(self.limit, CATCH_UP_PAGE)


def _backlog(svc: Services, gen_id: str, after: int,
             pager: _Pager) -> Generator[Run, None, int | None]:
    """The log's events after `after`, in pages (a long log is never one huge read).

    Returns None once the terminal event was yielded, or when the log is
    gone (past retention a live log is never empty: it always holds event
    1, so nothing will ever come; the stream ends without a terminal event
    and a reconnect gets 410). Else returns the last seq read: the log ran
    out, and what follows comes live.
    """
    last = after
    while True:
        limit = pager.limit
        entries = svc.reader_log.read_after(gen_id, last, limit)
        if entries is None:
            return None
        if not entries:
            return last
        page, ended = _until_terminal(entries)
        full = len(entries) == limit
        pager.learn(entries)
        yield page
        last = page[-1].seq
        # Let go of the page before waiting for the next one (a pool
        # connection, Redis): a crowd catching up would each hold ~100 KB.
        del entries, page
        if ended:
            return None
        if not full:
            return last


def follow_batches(svc: Services, gen_id: str, after: int,
                   direct: Direct | None = None, ended: bool = False,
                   first_page: list[LogEntry] | None = None,
                   behind: bool = False) -> Generator[Run | Quiet, None, None]:
    """Every event with seq > `after`, in order, in runs; the last run ends with the terminal.

    Backlog (and catch-up) runs hold LogEntry, live runs the hub's Live (its
    frame encoded once for all readers). Raises HubUnavailable on the first
    `next()` if the hub cannot subscribe, and lets redis.RedisError through:
    the caller decides how a cut stream ends.

    `direct`: the client's connection of a chunked HTTP/1.1 SSE response.
    While caught up, the hub writes live events to it itself (see
    `webapp.relay.subscription`); those events are not yielded here.
    `ended`: the record said the log has its terminal event. Nothing more can
    be published then, so the log alone is read: no subscription, no
    SUBSCRIBE round trip for a reload or a late GET. (Should the log run out
    before its terminal event, the reader follows it live as usual.)
    `first_page`: the log's events after `after`, read with the record in the
    stream's opening round trip. They go out first; being read before any
    subscription, they never count as caught up: the log is read again once
    subscribed (or, `ended`, only if the page did not reach the terminal).
    `behind`: the reader stalled (`webapp.relay.writes`); its first log read
    is a small page, as after an overflow.
    """
    if first_page:
        page, done = _until_terminal(first_page)
        yield page
        if done:
            return
        after = page[-1].seq
        # Not kept for the rest of the stream: up to READ_PAGE entries, ~150 KB
        # per reader that joined a long answer (measured with 1,000 of them).
        del page, first_page
    pager = _Pager()
    if behind:
        pager.fell_behind()
    if ended:
        rest = yield from _backlog(svc, gen_id, after, pager)
        if rest is None:
            return
        after = rest
    sub = svc.hub.subscribe(svc.keys.channel(gen_id))
    ping_s = svc.settings.ping_interval_s
    last = after
    counted = False
    try:
        while True:
            if sub.overflowed:
                sub.reset()  # before the read, so nothing after it is dropped
                pager.fell_behind()
            caught_up = yield from _backlog(svc, gen_id, last, pager)
            if caught_up is None:
                return
            last = caught_up
            quiet_since = time.monotonic()
            while not sub.overflowed:
                wait = ping_s - (time.monotonic() - quiet_since)
                handed = direct is not None and not sub.queue.qsize()
                if direct is not None and handed:
                    if not counted:
                        RECORDER.inc(STREAMS_DIRECT)
                        counted = True
                    sub.start_direct(direct.raw, last)
                try:
                    first: Item | None = sub.queue.get(timeout=max(wait, 0.0))
                except gevent.queue.Empty:
                    first = None
                if direct is not None and handed:
                    last, pending = sub.stop_direct()
                    if sub.broken:
                        return
                    if pending:
                        # The rest of a chunk the hub began: the client's socket
                        # is full. It gets STALL_GRACE_S with a small queue;
                        # then nothing is queued for it while it drains (up to
                        # READER_QUEUE_BYTES held per stalled reader) and it
                        # catches up from the log after.
                        sub.tighten(GRACE_HOLD_BYTES)
                        if pending := wait_out(direct.raw, pending):
                            sub.hold_off()
                            direct.sendall(pending)
                        sub.loosen()
                if first is None:
                    yield QUIET
                    # Also a safety net: re-read in case a message was lost.
                    break
                run = _take_live(sub, first, last)
                if run.items:
                    yield run.items
                    last = run.items[-1].seq
                    quiet_since = time.monotonic()
                if run.ended:
                    return
                if run.reread:
                    break
    finally:
        svc.hub.unsubscribe(sub)

