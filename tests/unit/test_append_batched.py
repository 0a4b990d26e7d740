"""The batched append script: one generation's events of a call are written together,
and the keys end exactly as one append at a time would leave them.

A private Redis (`private_redis`), so `INFO commandstats` counts this module's commands only.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from spool.connection import connect
from spool.generations import Generations
from spool.ids import new_generation_id
from spool.keys import Keys
from spool.log import EventLog, Retention
from spool.schemas import GenerationRequest
from tests.harness import RedisServer

RETENTION = Retention(live_s=600, final_s=60, tombstone_s=120)


@pytest.fixture
def log(private_redis: RedisServer) -> Iterator[EventLog]:
    client = connect(private_redis.url)
    yield EventLog(client, Keys("b" + secrets.token_hex(4)), RETENTION)
    client.close()


def create(log: EventLog) -> str:
    gen_id = new_generation_id()
    request = GenerationRequest.model_validate({"messages": [{"role": "user", "content": "x"}]})
    Generations(log.client, log.keys, log).create(gen_id, "t1", request, provider="mock",
                                                   model="mock-1", abandon_after_s=None)
    return gen_id


def calls(client: redis.Redis) -> dict[str, int]:
    """Commands run so far, by name."""
    return {name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in client.info("commandstats").items()}


def run_batched(log: EventLog, events: list[list[Any]]) -> list[int]:
    """One call of the batched script with `events` (batch_arguments form)."""
    args = [*log.batch_constants, *(x for event in events for x in event)]
    return [int(seq) for seq in log.many_script(keys=[], args=args)]


def run_one_at_a_time(log: EventLog, events: list[list[Any]]) -> list[int]:
    """The same events through the single-event script, one call each."""
    seqs = []
    for event in events:
        keys, args = log.expand_batch_arguments(event)
        seqs.append(int(log.script(keys=keys, args=args)))
    return seqs


def script_of(log: EventLog, gens: dict[str, str]) -> list[list[Any]]:
    """A tick's worth of events for generations `a` and `b` (and a missing one),
    interleaved, with every outcome the script has: appended, resent,
    too early, after the end, record missing."""
    a, b = gens["a"], gens["b"]

    def ev(gen: str, writer: str, n: int, event: str, data: dict[str, Any],
           fields: dict[str, Any] | None = None) -> list[Any]:
        return log.batch_arguments(gen, event, data, fields, (writer, n))

    return [
        ev(a, "w1", 1, "delta", {"text": "hel"}),
        ev(b, "w2", 1, "delta", {"text": "¡ho"}),
        ev(a, "w1", 2, "delta", {"text": "lo 🙂"}),
        ev(a, "w1", 2, "delta", {"text": "lo 🙂"}),  # resent: answered, not applied
        ev(b, "w2", 3, "delta", {"text": "la!"}),  # ahead of its predecessor: -3
        ev(b, "w2", 2, "tool_call", {"id": "c1", "name": "f", "arguments": "{}"}),
        ev(a, "w1", 3, "delta", {"text": " there"}, {"metrics": {"ttft_ms": 3}}),
        ev(gens["missing"], "w3", 1, "delta", {"text": "x"}),
        ev(a, "w1", 4, "tool_call", {"id": "c2", "name": "g", "arguments": "{}"}),
        ev(a, "w1", 5, "done", {"finish_reason": "stop"},
           {"status": "completed", "finish_reason": "stop"}),
        ev(a, "w1", 6, "delta", {"text": "late"}),  # after the end: -2
        ev(b, "w2", 3, "delta", {"text": "la!"}),
    ]


def state(log: EventLog, gen_id: str) -> dict[str, Any]:
    """Everything the append writes for `gen_id`, TTLs rounded to tens of seconds."""
    client, keys = log.client, log.keys
    named = {"record": keys.record(gen_id), "log": keys.log(gen_id), "text": keys.text(gen_id),
             "tools": keys.tool_calls(gen_id), "tombstone": keys.tombstone(gen_id)}
    record = client.hgetall(named["record"])
    for made_apart in ("created_ms", "created_at"):  # the two copies were created apart
        record.pop(made_apart, None)
    found: dict[str, Any] = {
        "record": record,
        "log": client.lrange(named["log"], 0, -1),
        "text": client.get(named["text"]),
        "tools": client.lrange(named["tools"], 0, -1),
    }
    for name, key in named.items():
        found[f"ttl:{name}"] = round(client.ttl(key), -1)
    return found


def test_a_call_ends_as_one_append_at_a_time_would(log: EventLog) -> None:
    together = {"a": create(log), "b": create(log), "missing": new_generation_id()}
    apart = {"a": create(log), "b": create(log), "missing": new_generation_id()}
    seqs_together = run_batched(log, script_of(log, together))
    seqs_apart = run_one_at_a_time(log, script_of(log, apart))
    assert seqs_together == seqs_apart == [2, 2, 3, 3, -3, 3, 4, -1, 5, 6, -2, 4]
    for name in ("a", "b"):
        one, other = state(log, together[name]), state(log, apart[name])
        # Entries name their own generation nowhere: logs compare as they are.
        assert one == other, name
    assert state(log, together["a"])["text"] == "hello 🙂 there"
    ended = state(log, together["a"])
    assert ended["record"]["ended"] == "6" and len(ended["tools"]) == 1
    assert ended["ttl:record"] == ended["ttl:tools"] == RETENTION.final_s


def test_a_generations_events_of_one_call_are_written_together(
        private_redis: RedisServer, log: EventLog) -> None:
    gen_id = create(log)
    events = [log.batch_arguments(gen_id, "delta", {"text": f"<{i}>"}, None, ("w", i + 1))
              for i in range(50)]
    before = calls(log.client)
    assert run_batched(log, events) == list(range(2, 52))
    after = calls(log.client)
    spent = {name: after[name] - before.get(name, 0) for name in after}
    # One read, one push of the 50 entries, one text append, one record write.
    assert (spent["hmget"], spent["rpush"], spent["append"], spent["hset"]) == (1, 1, 1, 1)
    assert log.client.get(log.keys.text(gen_id)) == "".join(f"<{i}>" for i in range(50))
    assert [e.seq for e in log.read_all(gen_id)] == list(range(1, 52))
