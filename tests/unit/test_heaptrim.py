"""The heap trimmer: one trim after a crowd of connections closes, never per connection."""

from __future__ import annotations

import gevent

from webapp import heaptrim
from webapp.heaptrim import TRIM_AFTER_CLOSED, HeapTrimmer, load_malloc_trim


def test_one_trim_after_a_crowd_closes(monkeypatch) -> None:
    monkeypatch.setattr(heaptrim, "TRIM_DELAY_S", 0.01)
    calls: list[int] = []
    trimmer = HeapTrimmer(trim=lambda pad: calls.append(pad) or 1)
    for _ in range(TRIM_AFTER_CLOSED + 50):
        trimmer.opened()
    for _ in range(TRIM_AFTER_CLOSED - 1):
        trimmer.closed()
    gevent.sleep(0.05)
    assert calls == []  # not enough closed yet
    for _ in range(51):
        trimmer.closed()
    gevent.sleep(0.05)
    assert calls == [0] and trimmer.trims == 1
    assert trimmer.peak == trimmer.open == 0


def test_a_few_connections_coming_and_going_never_trim(monkeypatch) -> None:
    monkeypatch.setattr(heaptrim, "TRIM_DELAY_S", 0.01)
    calls: list[int] = []
    trimmer = HeapTrimmer(trim=lambda pad: calls.append(pad) or 1)
    for _ in range(10 * TRIM_AFTER_CLOSED):
        trimmer.opened()
        trimmer.closed()
    gevent.sleep(0.05)
    assert calls == []


def test_glibc_trim_is_found_and_runs() -> None:
    trim = load_malloc_trim()
    assert trim is not None  # this machine's Python runs on glibc
    assert trim(0) in (0, 1)
