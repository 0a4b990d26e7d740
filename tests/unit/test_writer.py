"""The batched writer against a real (private) Redis: order, refusal, NOSCRIPT,
the first-output guard, and delta merging under backpressure."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
import redis

from spool.connection import connect
from spool.events import decode_entry
from spool.keys import Keys
from spool.log import EventLog, Retention
from worker import writer as writer_module
from worker.writer import MERGE_AFTER, BatchWriter, _Append, merge_deltas


@pytest.fixture
def log(redis_server: Any) -> Iterator[EventLog]:
    client = connect(redis_server.url)
    keys = Keys("w" + secrets.token_hex(6))
    yield EventLog(client, keys, Retention(600, 600, 600))
    client.close()


def make_gen(log: EventLog) -> str:
    gen_id = "gen_" + secrets.token_urlsafe(16)
    log.client.hset(log.keys.record(gen_id), mapping={"status": "in_progress", "last_seq": 0})
    return gen_id


def entries(log: EventLog, gen_id: str) -> list[Any]:
    return [decode_entry(raw) for raw in log.client.lrange(log.keys.log(gen_id), 0, -1)]


def delta(gen_id: str, text: str, done: Any = None, fields: Any = None) -> _Append:
    return _Append(gen_id, "delta", {"text": text}, fields, done)


def test_merge_deltas_keeps_each_generations_order() -> None:
    other = _Append("b", "status", {"status": "in_progress"}, None, None)
    batch = [delta("a", "1", fields={"metrics": 1}), delta("b", "x"), delta("a", "2"),
             other, delta("b", "y"), delta("a", "3", fields={"metrics": 2})]
    merged = merge_deltas(batch)
    assert [(m.gen_id, m.event, m.data) for m in merged] == [
        ("a", "delta", {"text": "123"}), ("b", "delta", {"text": "x"}),
        ("b", "status", {"status": "in_progress"}), ("b", "delta", {"text": "y"})]
    assert merged[0].fields == {"metrics": 2}


def test_merge_deltas_never_joins_across_other_events_or_waiters() -> None:
    waited = gevent.event.AsyncResult()
    done = _Append("a", "done", {"finish_reason": "stop"}, None, None)
    batch = [delta("a", "1"), delta("a", "2", done=waited), delta("a", "3"), done, delta("a", "4")]
    assert [m.data.get("text") for m in merge_deltas(batch)] == ["1", "2", "3", None, "4"]


def test_appends_in_order_with_one_terminal_and_refusal_after(log: EventLog) -> None:
    writer = BatchWriter(log)
    gens = [make_gen(log) for _ in range(5)]
    for i in range(200):
        for gen_id in gens:
            writer.emit(gen_id, "delta", {"text": f"{i},"})
    seqs = [writer.emit(g, "done", {"finish_reason": "stop"}, {"status": "completed"}, wait=True)
            for g in gens]
    assert all(isinstance(seq, int) and seq > 1 for seq in seqs)
    for gen_id in gens:
        log_entries = entries(log, gen_id)
        assert [e.seq for e in log_entries] == list(range(1, len(log_entries) + 1))
        assert [e.terminal for e in log_entries].count(True) == 1
        assert log.client.get(log.keys.text(gen_id)) == "".join(f"{i}," for i in range(200))
    late = writer.emit(gens[0], "delta", {"text": "late"}, wait=True)
    assert late == -2 and writer.refused(gens[0])
    writer.forget(gens[0])
    assert not writer.refused(gens[0])


def test_reloads_the_script_after_redis_lost_it(log: EventLog) -> None:
    writer = BatchWriter(log)
    gen_id = make_gen(log)
    assert writer.emit(gen_id, "delta", {"text": "a"}, wait=True) == 1
    log.client.script_flush()
    assert writer.emit(gen_id, "delta", {"text": "b"}, wait=True) == 2
    assert log.client.get(log.keys.text(gen_id)) == "ab"


def test_output_guard_runs_before_the_first_output_only(log: EventLog) -> None:
    writer = BatchWriter(log)
    calls: list[str] = []
    refuse = {"no"}

    def guard(gen_id: str) -> None:
        calls.append(gen_id)
        if gen_id in refuse:
            raise LookupError(gen_id)

    writer.output_guard = guard
    gen_id = make_gen(log)
    writer.emit(gen_id, "status", {"status": "in_progress"}, wait=True)
    assert calls == []
    writer.emit(gen_id, "delta", {"text": "a"})
    writer.emit(gen_id, "delta", {"text": "b"}, wait=True)
    assert calls == [gen_id]
    with pytest.raises(LookupError):
        writer.emit("no", "delta", {"text": "x"})
    assert writer.drain(5)


def test_backpressure_merges_deltas_but_keeps_the_text(log: EventLog) -> None:
    writer = BatchWriter(log)
    gen_id = make_gen(log)
    pieces = [f"{i:05d}|" for i in range(MERGE_AFTER * 3)]
    for piece in pieces:  # no yield in between: all of them wait for one flush
        writer.emit(gen_id, "delta", {"text": piece})
    assert writer.drain(30)
    assert log.client.get(log.keys.text(gen_id)) == "".join(pieces)
    assert len(entries(log, gen_id)) < len(pieces)


def test_a_missing_record_is_refused(log: EventLog) -> None:
    writer = BatchWriter(log)
    assert writer.emit("gen_" + secrets.token_urlsafe(16), "delta", {"text": "x"}, wait=True) == -1


def test_keeps_order_when_redis_drops_its_connections(redis_server: Any, log: EventLog) -> None:
    if not hasattr(redis_server, "restart"):
        pytest.skip("needs a private redis-server")
    writer = BatchWriter(log)
    gen_id = make_gen(log)
    writer.emit(gen_id, "delta", {"text": "before,"}, wait=True)
    client = redis.Redis.from_url(redis_server.url)
    client.client_kill_filter(_type="normal", skipme=True)  # drop every connection
    client.close()
    assert writer.emit(gen_id, "delta", {"text": "after"}, wait=True) == 2
    assert log.client.get(log.keys.text(gen_id)) == "before,after"


def test_a_first_output_cuts_the_tick_short_at_most_once_per_gap(
        log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    # Long intervals make "early", "after the gap" and "at the tick" far apart.
    monkeypatch.setattr(writer_module, "TICK_S", 0.6)
    monkeypatch.setattr(writer_module, "EARLY_GAP_S", 0.25)
    writer = BatchWriter(log)
    a, b, c = make_gen(log), make_gen(log), make_gen(log)
    writer.emit(a, "status", {"status": "in_progress"}, wait=True)  # a quiet writer: at once
    flushed_at = time.monotonic()
    writer.emit(a, "status", {"status": "in_progress"})  # not output: waits for the tick
    writer.emit(b, "delta", {"text": "first"}, wait=True)  # b's first output: early
    early_s = time.monotonic() - flushed_at
    writer.emit(c, "delta", {"text": "first"}, wait=True)  # c's, just behind: after the gap
    gap_s = time.monotonic() - flushed_at - early_s
    assert early_s < 0.15 and 0.2 <= gap_s < 0.45, (early_s, gap_s)
    assert [len(entries(log, gen)) for gen in (a, b, c)] == [2, 1, 1]
    regular_at = time.monotonic()
    writer.emit(b, "delta", {"text": " second"}, wait=True)  # not b's first: the tick
    assert time.monotonic() - regular_at >= 0.5
