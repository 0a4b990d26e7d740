"""What one slow reader can make a web process hold is bounded in bytes, not only in items.

A reader's queue counted items, and an item can be a whole burst of events
(the hub hands a channel's messages read together over as one item): a
stalled reader of large events (8 KB deltas) pinned 13-67 MB of web RSS in
`test_full_queue_catches_up_from_the_log`. Backlog pages counted entries:
500 entries of 8 KB are a 4 MB page held while the client is slow.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from spool.events import LogEntry
from webapp.relay.follow import CATCH_UP_PAGE, PAGE_BYTES, _Pager
from webapp.relay.stream import relay
from webapp.relay.subscription import (
    GAP,
    READER_QUEUE_BYTES,
    READER_QUEUE_SIZE,
    Live,
    Subscription,
    live,
    weight,
)


def _delta(seq: int, size: int) -> Live:
    return live(b'%d delta {"text":"%b"}' % (seq, b"x" * size))


def _drain(sub: Subscription) -> list[Any]:
    items = []
    while sub.queue.qsize():
        items.append(sub.queue.get_nowait())
    return items


def test_a_queue_overflows_on_bytes_before_items() -> None:
    sub = Subscription("c")
    for seq in range(1, 41):  # 40 events of ~24 KB held each (raw, frame, chunk)
        item = _delta(seq, 8192)
        sub.offer(item, weight(item))
    assert sub.overflowed
    assert _drain(sub) == [GAP]  # what it held is dropped: the reader re-reads the log


def test_held_bytes_stay_under_the_bound_until_the_overflow() -> None:
    sub = Subscription("c")
    seq = 0
    while not sub.overflowed:
        seq += 1
        item = _delta(seq, 8192)
        held_before = sub.queue.held
        sub.offer(item, weight(item))
        if not sub.overflowed:
            assert sub.queue.held == held_before + weight(item) <= READER_QUEUE_BYTES
    assert seq < READER_QUEUE_SIZE
    assert sub.queue.held == 0


def test_a_burst_item_counts_every_event_it_carries() -> None:
    sub = Subscription("c")
    burst = tuple(_delta(seq, 1024) for seq in range(1, 101))  # one item, ~320 KB
    sub.offer(burst, weight(burst))  # an empty queue takes any one item...
    assert not sub.overflowed and sub.queue.qsize() == 1
    more = _delta(101, 10)
    sub.offer(more, weight(more))  # ...but nothing more past the bound
    assert sub.overflowed and _drain(sub) == [GAP]


def test_taking_items_frees_their_share() -> None:
    sub = Subscription("c")
    items = [_delta(seq, 4096) for seq in range(1, 4)]
    for item in items:
        sub.offer(item, weight(item))
    assert sub.queue.held == sum(weight(item) for item in items)
    sub.queue.get_nowait()
    assert sub.queue.held == weight(items[1]) + weight(items[2])
    sub.queue.clear()
    assert sub.queue.held == 0


def test_small_tokens_are_still_bounded_by_count() -> None:
    sub = Subscription("c")
    for seq in range(1, READER_QUEUE_SIZE + 1):
        item = _delta(seq, 3)
        sub.offer(item, weight(item))
    assert not sub.overflowed and sub.queue.qsize() == READER_QUEUE_SIZE
    item = _delta(READER_QUEUE_SIZE + 1, 3)
    sub.offer(item, weight(item))
    assert sub.overflowed


class PagedLog:
    """A readers' event log of `count` deltas of `size` characters then done; records limits."""

    def __init__(self, count: int, size: int) -> None:
        self.entries = [LogEntry(seq, "delta", '{"text":"%s"}' % ("x" * size))
                        for seq in range(1, count + 1)]
        self.entries.append(LogEntry(count + 1, "done", '{"finish_reason":"stop"}'))
        self.limits: list[int] = []
        self.page_bytes: list[int] = []

    def read_after(self, gen_id: str, after: int, limit: int) -> list[LogEntry]:
        self.limits.append(limit)
        page = self.entries[after: after + limit]
        self.page_bytes.append(sum(len(entry.data) for entry in page))
        return page


def _relay_all(log: PagedLog) -> bytes:
    svc: Any = SimpleNamespace(settings=SimpleNamespace(sse_retry_ms=1000), reader_log=log)
    return b"".join(relay(svc, "gen_x", 0, None, ended=True))


def test_pages_of_large_events_shrink_to_the_byte_bound() -> None:
    log = PagedLog(2000, 8191)
    body = _relay_all(log)
    assert body.count(b"event: delta") == 2000 and b"event: done" in body
    assert log.limits[0] == 500  # sizes are learnt from the first page
    assert set(log.limits[1:]) == {PAGE_BYTES // 8205}
    assert max(log.page_bytes[1:]) <= PAGE_BYTES


def test_pages_of_tokens_stay_full_size() -> None:
    log = PagedLog(2000, 4)
    _relay_all(log)
    assert log.limits == [500, 500, 500, 500, 500]


def test_a_reader_that_fell_behind_starts_with_a_small_page() -> None:
    pager = _Pager()
    pager.fell_behind()
    assert pager.limit == CATCH_UP_PAGE
    pager.learn([LogEntry(seq, "delta", '{"text":"ab"}') for seq in range(1, 33)])
    assert pager.limit == 500


def test_a_tightened_queue_overflows_at_its_small_bound_until_loosened() -> None:
    # A reader waiting out a slow client's grace keeps a small queue only.
    sub = Subscription("ch")
    sub.tighten(4096)
    for seq in range(1, 100):
        sub.offer(_delta(seq, 100), weight(_delta(seq, 100)))
        if sub.overflowed:
            break
    assert sub.overflowed and seq < 20
    assert _drain(sub) == [GAP]
    sub.loosen()
    sub.reset()
    for seq in range(1, 100):
        sub.offer(_delta(seq, 100), weight(_delta(seq, 100)))
    assert not sub.overflowed and len(_drain(sub)) == 99
