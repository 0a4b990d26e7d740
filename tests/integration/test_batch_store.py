"""The batch store's scripts against a real Redis: accounting, feeding, cancel."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from spool.batches import BatchStore, Row, cancel_batch, on_generation_end, view
from spool.connection import connect
from spool.events import DONE
from spool.generations import Generations
from spool.ids import new_batch_id, new_generation_id
from spool.keys import Keys
from spool.log import EventLog, Retention
from spool.schemas import GenerationRequest

RETENTION = Retention(live_s=600, final_s=60, tombstone_s=120)


class World:
    def __init__(self, url: str, keys: Keys) -> None:
        self.url = url
        self.client = connect(url)
        self.keys = keys
        self.log = EventLog(self.client, keys, RETENTION)
        self.gens = Generations(self.client, keys, self.log)
        self.store = BatchStore(self.client, keys, RETENTION)

    def batch(self, n: int) -> tuple[str, list[str]]:
        batch_id = new_batch_id()
        request = GenerationRequest.model_validate(
            {"messages": [{"role": "user", "content": "x"}], "priority": "batch"})
        pipe = self.client.pipeline(transaction=False)
        rows = [Row(new_generation_id(), f"c{i}") for i in range(n)]
        for row in rows:
            self.gens.create(row.gen_id, "t1", request, provider="mock", model="m",
                             abandon_after_s=None, batch_id=batch_id, pipe=pipe)
        self.store.queue_rows(pipe, batch_id, rows)
        pipe.execute()
        self.store.open(batch_id, "t1", n, {"k": "v"})
        return batch_id, [row.gen_id for row in rows]

    def finish(self, gen_id: str, event: str = DONE, status: str = "completed") -> None:
        self.log.append(gen_id, event, {"finish_reason": "stop"}, {"status": status})
        assert on_generation_end(self.client, self.keys, gen_id, self.gens.load(gen_id)) > 0

    def progress(self, batch_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(e.event, orjson.loads(e.data)) for e in self.store.read_progress(batch_id)]


@pytest.fixture
def world(redis_server: Any) -> Iterator[World]:
    found = World(redis_server.url, Keys("b" + secrets.token_hex(4)))
    yield found
    found.client.close()


def test_row_end_is_counted_once_and_ends_the_batch_once(world: World) -> None:
    batch_id, gens = world.batch(3)
    assert world.progress(batch_id) == [
        ("progress", {"completed": 0, "failed": 0, "cancelled": 0, "total": 3})]
    world.finish(gens[0])
    again = on_generation_end(world.client, world.keys, gens[0], world.gens.load(gens[0]))
    assert again == 0  # idempotent per row
    world.finish(gens[1], "error", "failed")
    assert view(batch_id, world.store.load(batch_id) or {})["status"] == "in_progress"
    world.finish(gens[2])
    events = world.progress(batch_id)
    assert [name for name, _ in events] == ["progress"] * 4 + ["done"]
    assert events[-1][1] == {"status": "completed", "completed": 2, "failed": 1,
                             "cancelled": 0, "total": 3}
    record = world.store.load(batch_id) or {}
    assert record["status"] == "completed" and record["ended"] == "5"
    assert 0 < world.client.ttl(world.keys.batch_record(batch_id)) <= RETENTION.final_s
    assert world.store.finished_page(batch_id, 0, 10) == [gens[0], gens[1], gens[2]]
    assert world.store.custom_ids(batch_id, gens) == ["c0", "c1", "c2"]
    assert not world.client.sismember(world.keys.batches_open(), batch_id)


def test_unended_or_unbatched_generations_are_not_counted(world: World) -> None:
    batch_id, gens = world.batch(1)
    assert on_generation_end(world.client, world.keys, gens[0], world.gens.load(gens[0])) == 0
    assert on_generation_end(world.client, world.keys, "gen_x", {"status": "completed",
                                                                 "ended": "3"}) == 0
    assert (world.store.load(batch_id) or {})["completed"] == "0"


def test_concurrent_enders_count_exactly(world: World) -> None:
    batch_id, gens = world.batch(40)
    for gen_id in gens:
        world.log.append(gen_id, DONE, {"finish_reason": "stop"}, {"status": "completed"})

    def end_all() -> None:
        client = connect(world.url)  # one connection per thread: real concurrency
        for gen_id in gens:
            on_generation_end(client, world.keys, gen_id, world.gens.load(gen_id))

    threads = [threading.Thread(target=end_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = world.progress(batch_id)
    assert len(events) == 42 and [n for n, _ in events].count("done") == 1
    assert (world.store.load(batch_id) or {})["completed"] == "40"


def test_take_row_feeds_in_order_until_empty_or_cancelled(world: World) -> None:
    batch_id, gens = world.batch(3)
    assert world.store.take_row(batch_id) == gens[0]
    record = world.store.load(batch_id) or {}
    assert record["status"] == "in_progress"
    assert [g for g, _ in world.store.dispatched(batch_id)] == [gens[0]]
    world.store.flag_cancel(batch_id)
    assert world.store.take_row(batch_id) is None
    assert world.store.take_row(new_batch_id()) is None  # unknown batch


def test_cancel_drops_pending_and_cancels_dispatched(world: World) -> None:
    batch_id, gens = world.batch(5)
    fed = world.store.take_row(batch_id)
    assert fed == gens[0]
    cancel_batch(world.store, world.gens, batch_id)
    for gen_id in gens:
        record = world.gens.load(gen_id) or {}
        assert record["status"] == "cancelled" and "ended" in record
        assert world.log.read_all(gen_id)[-1].event == "cancelled"
    events = world.progress(batch_id)
    assert events[-1] == ("cancelled", {"reason": "user", "status": "cancelled",
                                        "completed": 0, "failed": 0, "cancelled": 5,
                                        "total": 5})
    assert world.store.dispatched(batch_id) == []
    assert world.client.llen(world.keys.batch_pending(batch_id)) == 0


def test_a_row_counted_while_pending_leaves_no_dispatched_entry(world: World) -> None:
    batch_id, gens = world.batch(2)
    world.gens.request_cancel(gens[0], world.gens.load(gens[0]) or {})
    assert (world.store.load(batch_id) or {})["cancelled"] == "1"
    assert world.store.take_row(batch_id) == gens[0]  # still in pending; fed anyway
    on_generation_end(world.client, world.keys, gens[0], world.gens.load(gens[0]))
    assert world.store.dispatched(batch_id) == []
    assert (world.store.load(batch_id) or {})["cancelled"] == "1"
