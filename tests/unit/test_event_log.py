"""The atomic append and paged reads, against a real Redis."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from spool.connection import connect
from spool.events import decode_entry
from spool.generations import Generations
from spool.ids import new_generation_id
from spool.keys import Keys
from spool.log import APPENDED_AFTER_END, APPENDED_MISSING, EventLog, Retention
from spool.schemas import GenerationRequest


@pytest.fixture
def store(redis_server: Any) -> Iterator[tuple[redis.Redis, Keys, EventLog, Generations]]:
    client = connect(redis_server.url)
    keys = Keys("u" + secrets.token_hex(4))
    log = EventLog(client, keys, Retention(live_s=600, final_s=60, tombstone_s=120))
    yield client, keys, log, Generations(client, keys, log)
    client.close()


def create(gens: Generations) -> str:
    gen_id = new_generation_id()
    request = GenerationRequest.model_validate({"messages": [{"role": "user", "content": "x"}]})
    gens.create(gen_id, "t1", request, provider="mock", model="mock-1", abandon_after_s=None)
    return gen_id


def test_create_writes_record_and_first_event(store: Any) -> None:
    client, keys, log, gens = store
    gen_id = create(gens)
    record = gens.load(gen_id)
    assert record["status"] == "queued" and record["tenant"] == "t1"
    assert record["last_seq"] == "1"
    [entry] = log.read(gen_id)
    assert (entry.seq, entry.event, entry.data) == (1, "status", '{"status":"queued"}')
    assert client.ttl(keys.record(gen_id)) > 0 and client.ttl(keys.tombstone(gen_id)) > 0


def test_appends_are_sequential_and_published(store: Any) -> None:
    client, keys, log, gens = store
    gen_id = create(gens)
    pubsub = client.pubsub()
    pubsub.subscribe(keys.channel(gen_id))
    pubsub.get_message(timeout=1)
    seqs = [log.append(gen_id, "delta", {"text": t}) for t in ["a", "🙂", "世\n"]]
    assert seqs == [2, 3, 4]
    published = [pubsub.get_message(timeout=1)["data"] for _ in range(3)]
    assert [decode_entry(p).seq for p in published] == [2, 3, 4]
    assert published[1] == '3 delta {"text":"🙂"}'
    assert client.get(keys.text(gen_id)) == "a🙂世\n"
    assert gens.load(gen_id)["output"] == "1"
    assert [e.seq for e in log.read(gen_id, after=2)] == [3, 4]
    assert [e.seq for e in log.read(gen_id, after=1, limit=2)] == [2, 3]
    pubsub.close()


def test_exactly_one_terminal_event(store: Any) -> None:
    client, keys, log, gens = store
    gen_id = create(gens)
    done = log.append(gen_id, "done", {"finish_reason": "stop"}, fields={"status": "completed"})
    assert done == 2
    assert log.append(gen_id, "error", {"type": "x"}) == APPENDED_AFTER_END
    assert log.append(gen_id, "delta", {"text": "late"}) == APPENDED_AFTER_END
    record = gens.load(gen_id)
    assert record["ended"] == "2" and record["status"] == "completed"
    assert [e.event for e in log.read(gen_id)] == ["status", "done"]
    assert 0 < client.ttl(keys.record(gen_id)) <= 60
    assert 60 < client.ttl(keys.tombstone(gen_id)) <= 120


def test_missing_record_refuses_appends(store: Any) -> None:
    _, _, log, _ = store
    assert log.append(new_generation_id(), "delta", {"text": "x"}) == APPENDED_MISSING


def test_pipelined_appends_keep_order_per_generation(store: Any) -> None:
    client, _, log, gens = store
    a, b = create(gens), create(gens)
    pipe = client.pipeline(transaction=False)
    for i in range(50):
        log.queue_append(pipe, a, "delta", {"text": str(i)})
        log.queue_append(pipe, b, "delta", {"text": str(i)})
    results = pipe.execute()
    assert results[::2] == list(range(2, 52)) == results[1::2]
    assert "".join(str(i) for i in range(50)) == client.get(log.keys.text(a))


def test_read_all_pages(store: Any) -> None:
    _, _, log, gens = store
    gen_id = create(gens)
    pipe = log.client.pipeline(transaction=False)
    for i in range(1200):
        log.queue_append(pipe, gen_id, "delta", {"text": str(i % 10)})
    pipe.execute()
    entries = log.read_all(gen_id)
    assert [e.seq for e in entries] == list(range(1, 1202))


def test_a_resent_append_is_answered_not_applied_twice(store: Any) -> None:
    client, keys, log, gens = store
    gen_id = create(gens)
    keys_a, args_a = log.arguments(gen_id, "delta", {"text": "once"}, writer=("w1", 1))
    first = log.script(keys=keys_a, args=args_a)
    # The reply was lost, the writer sends the same append again.
    assert log.script(keys=keys_a, args=args_a) == first == 2
    keys_b, args_b = log.arguments(gen_id, "delta", {"text": " more"}, writer=("w1", 2))
    assert log.script(keys=keys_b, args=args_b) == 3
    # Both resent after a later one landed: still nothing doubled.
    assert log.script(keys=keys_a, args=args_a) == 3
    assert client.get(keys.text(gen_id)) == "once more"
    assert [e.seq for e in log.read(gen_id)] == [1, 2, 3]
    # Another writer (a rerun after a lost worker) is not mistaken for a resend.
    keys_c, args_c = log.arguments(gen_id, "delta", {"text": "!"}, writer=("w2", 1))
    assert log.script(keys=keys_c, args=args_c) == 4


def test_read_after_tells_nothing_new_from_a_log_that_is_gone(store: Any) -> None:
    client, keys, log, gens = store
    gen_id = create(gens)
    for i in range(3):
        log.append(gen_id, "delta", {"text": str(i)})
    assert [e.seq for e in log.read_after(gen_id, 0)] == [1, 2, 3, 4]
    assert [e.seq for e in log.read_after(gen_id, 2)] == [3, 4]
    assert [e.seq for e in log.read_after(gen_id, 2, limit=1)] == [3]
    assert log.read_after(gen_id, 4) == []  # caught up: nothing new, the log is there
    client.delete(keys.log(gen_id))
    assert log.read_after(gen_id, 4) is None  # gone
    assert log.read_after(gen_id, 0) is None
