"""The writer when Redis refuses writes (a private redis-server at maxmemory with
noeviction): order kept through a short refusal, one `unavailable` end past the
bound, and the append script's "too early" answer that keeps logs free of holes."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
import redis

from spool.connection import connect
from spool.events import decode_entry
from spool.keys import Keys
from spool.log import APPENDED_TOO_EARLY, EventLog, Retention
from tests.harness import RedisServer
from worker.writer import GAVE_UP, BatchWriter
from worker.writeretry import WriteRetry


@pytest.fixture
def log(private_redis: RedisServer) -> Iterator[EventLog]:
    client = connect(private_redis.url)
    yield EventLog(client, Keys("f" + secrets.token_hex(6)), Retention(600, 600, 600))
    client.close()


@pytest.fixture
def full(private_redis: RedisServer) -> Iterator[Any]:  # its maxmemory is changed
    """`full(True)` makes Redis refuse writes (OOM), `full(False)` takes it back."""
    admin = redis.Redis.from_url(private_redis.url)
    admin.config_set("maxmemory-policy", "noeviction")

    def set_full(on: bool) -> None:
        admin.config_set("maxmemory", 100_000 if on else 0)

    yield set_full
    set_full(False)
    admin.close()


def make_gen(log: EventLog) -> str:
    gen_id = "gen_" + secrets.token_urlsafe(16)
    log.client.hset(log.keys.record(gen_id), mapping={"status": "in_progress", "last_seq": 0})
    return gen_id


def entries(log: EventLog, gen_id: str) -> list[Any]:
    return [decode_entry(raw) for raw in log.client.lrange(log.keys.log(gen_id), 0, -1)]


def test_an_append_ahead_of_its_predecessor_is_answered_too_early(log: EventLog) -> None:
    gen_id = make_gen(log)

    def send(text: str, writer: tuple[str, int]) -> int:
        keys, args = log.arguments(gen_id, "delta", {"text": text}, writer=writer)
        return int(log.script(keys=keys, args=args))

    assert send("b", ("w1", 2)) == APPENDED_TOO_EARLY  # number 1 has not landed
    assert send("a", ("w1", 1)) == 1
    assert send("b", ("w1", 2)) == 2
    assert send("d", ("w1", 4)) == APPENDED_TOO_EARLY
    assert send("x", ("w2", 2)) == APPENDED_TOO_EARLY  # a new writer starts at 1
    assert log.client.get(log.keys.text(gen_id)) == "ab"


def test_a_short_refusal_costs_latency_only(log: EventLog, full: Any) -> None:
    writer = BatchWriter(log, WriteRetry(bound_s=30.0))
    gens = [make_gen(log) for _ in range(3)]
    for gen_id in gens:
        writer.emit(gen_id, "delta", {"text": "a,"}, wait=True)
    full(True)
    for i in range(50):
        for gen_id in gens:
            writer.emit(gen_id, "delta", {"text": f"{i},"})
    gevent.sleep(1.0)
    assert writer.retry.failing_since is not None  # it did meet the refusal
    assert not any(writer.refused(g) for g in gens)  # an error reply is not "refused"
    full(False)
    seqs = [writer.emit(g, "done", {"finish_reason": "stop"}, {"status": "completed"}, wait=True)
            for g in gens]
    assert all(seq > 0 for seq in seqs)
    for gen_id in gens:
        log_entries = entries(log, gen_id)
        assert [e.seq for e in log_entries] == list(range(1, len(log_entries) + 1))
        assert [e.terminal for e in log_entries] == [False] * (len(log_entries) - 1) + [True]
        assert log.client.get(log.keys.text(gen_id)) == "a," + "".join(f"{i}," for i in range(50))


def test_past_the_bound_one_unavailable_end_once_writes_return(log: EventLog,
                                                               full: Any) -> None:
    writer = BatchWriter(log, WriteRetry(bound_s=0.5))
    gen_id = make_gen(log)
    writer.emit(gen_id, "delta", {"text": "kept "}, wait=True)
    full(True)
    writer.emit(gen_id, "delta", {"text": "lost"})
    done = gevent.spawn(writer.emit, gen_id, "done", {"finish_reason": "stop"}, None, wait=True)
    gevent.sleep(1.5)
    assert done.ready() and done.value == GAVE_UP  # the runner learns at once
    assert writer.refused(gen_id)  # so it stops reading from the provider
    assert entries(log, gen_id)[-1].event == "delta"  # nothing could be written yet
    full(False)
    assert writer.drain(10)
    log_entries = entries(log, gen_id)
    assert [e.event for e in log_entries] == ["delta", "error"]
    assert '"type":"unavailable"' in log_entries[-1].data
    assert '"retryable":true' in log_entries[-1].data
    assert log.client.get(log.keys.text(gen_id)) == "kept "
    record = log.client.hgetall(log.keys.record(gen_id))
    assert record["status"] == "failed" and record["ended"] == "2"
    assert writer.emit(gen_id, "delta", {"text": "late"}, wait=True) == GAVE_UP
