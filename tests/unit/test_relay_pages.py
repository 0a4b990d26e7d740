"""A relay lets go of each log page before it reads the next.

A reader that joined a long answer got its first page (up to 500 entries)
with the record and kept it for the whole stream: with 1,000 readers of a
hot answer, ~487,000 LogEntry objects and ~146 KB of web RSS per reader.
"""

from __future__ import annotations

import weakref
from types import SimpleNamespace
from typing import Any

from spool.events import LogEntry
from webapp.relay.stream import relay


class Page(list):  # type: ignore[type-arg]
    """A list that can be weakly referenced."""


class WatchingLog:
    """The readers' event log: records whether the page given before is still alive."""

    def __init__(self, earlier: weakref.ref[Page], rest: list[LogEntry]) -> None:
        self.earlier = earlier
        self.rest = rest
        self.alive_at_read: list[bool] = []

    def read_after(self, gen_id: str, after: int, limit: int) -> list[LogEntry]:
        self.alive_at_read.append(self.earlier() is not None)
        entries, self.rest = self.rest, []
        return entries


def test_the_first_page_is_let_go_before_the_next_read() -> None:
    first = Page(LogEntry(seq, "delta", '{"text":"x"}') for seq in range(1, 501))
    log = WatchingLog(weakref.ref(first), [LogEntry(501, "done", '{"finish_reason":"stop"}')])
    svc: Any = SimpleNamespace(settings=SimpleNamespace(sse_retry_ms=1000), reader_log=log)
    stream = relay(svc, "gen_x", 0, None, ended=True, first_page=first)
    del first
    body = b"".join(stream)
    assert log.alive_at_read == [False]
    assert body.count(b"event: delta") == 500 and body.endswith(b'{"finish_reason":"stop"}\n\n')
