"""Leases and the settle rule against a real Redis (no worker process needed)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from rq import Queue

from spool.connection import connect, connect_rq
from spool.events import decode_entry
from spool.generations import Generations
from spool.ids import new_generation_id
from spool.keys import Keys
from spool.lease import Leases, Settler
from spool.log import EventLog, Retention
from spool.schemas import parse_generation_request


@dataclass
class World:
    client: redis.Redis
    rq: redis.Redis
    keys: Keys
    log: EventLog
    generations: Generations

    def create(self, priority: str = "interactive") -> str:
        gen_id = new_generation_id()
        request = parse_generation_request(
            {"messages": [{"role": "user", "content": "hi"}], "priority": priority},
            max_tokens_limit=100_000)
        self.generations.create(gen_id, "t", request, provider="mock", model="mock-1",
                                abandon_after_s=None)
        return gen_id

    def events(self, gen_id: str) -> list[Any]:
        return [decode_entry(raw) for raw in self.client.lrange(self.keys.log(gen_id), 0, -1)]

    def settler(self) -> Settler:
        return Settler(self.log, self.rq, job_timeout_s=60)

    def expire(self, gen_id: str) -> None:
        """Make a lease look long dead (its deadline in the past)."""
        self.client.zadd(self.keys.running(), {gen_id: 1})


@pytest.fixture
def world(redis_server: Any) -> Iterator[World]:
    client = connect(redis_server.url)
    rq = connect_rq(redis_server.url)
    keys = Keys("l" + secrets.token_hex(6))
    log = EventLog(client, keys, Retention(600, 600, 600))
    yield World(client, rq, keys, log, Generations(client, keys, log))
    client.close()
    rq.close()


def test_refresh_extends_own_leases_and_reports_lost_ones(world: World) -> None:
    leases = Leases(world.client, world.keys)
    mine, taken = world.create(), world.create()
    leases.acquire([mine], "w1")
    leases.acquire([taken], "w1")
    before = world.client.zscore(world.keys.running(), mine)
    world.expire(taken)
    assert leases.take(taken, "settler")
    assert leases.refresh([mine, taken], "w1") == [taken]
    assert (world.client.zscore(world.keys.running(), mine) or 0) >= (before or 0)
    assert leases.confirm(mine, "w1") and not leases.confirm(taken, "w1")
    assert leases.release(mine, "w1") and not leases.release(taken, "w1")
    assert world.client.zscore(world.keys.running(), mine) is None


def test_a_live_lease_cannot_be_taken_and_an_expired_one_only_once(world: World) -> None:
    leases = Leases(world.client, world.keys)
    gen_id = world.create()
    leases.acquire([gen_id], "w1")
    assert not leases.take(gen_id, "s0")
    world.expire(gen_id)
    with ThreadPoolExecutor(16) as pool:
        wins = list(pool.map(lambda i: leases.take(gen_id, f"s{i}"), range(32)))
    assert wins.count(True) == 1


def test_settle_requeues_a_generation_without_output(world: World) -> None:
    gen_id = world.create(priority="batch")
    world.log.append(gen_id, "status", {"status": "in_progress"}, {"status": "in_progress"})
    Leases(world.client, world.keys).acquire([gen_id], "dead-worker")
    world.expire(gen_id)
    outcomes = world.settler().settle_expired()
    assert [(o.gen_id, o.action) for o in outcomes] == [(gen_id, "requeued")]
    assert [e.data for e in world.events(gen_id)] == [
        '{"status":"queued"}', '{"status":"in_progress"}', '{"status":"queued"}']
    assert world.client.hget(world.keys.record(gen_id), "status") == "queued"
    queue = Queue(world.keys.queue_name("batch"), connection=world.rq)
    assert queue.get_job_ids() == [gen_id]
    assert world.client.zscore(world.keys.running(), gen_id) is None
    assert world.settler().settle_expired() == []  # settled exactly once


def lost_mid_answer(world: World, text: str) -> str:
    """A generation that streamed `text`, its worker gone and its lease expired."""
    gen_id = world.create()
    world.log.append(gen_id, "status", {"status": "in_progress"},
                     {"status": "in_progress", "started_ms": 1})
    world.log.append(gen_id, "delta", {"text": text})
    Leases(world.client, world.keys).acquire([gen_id], "dead-worker")
    world.expire(gen_id)
    return gen_id


def test_settle_ends_a_generation_with_output_as_worker_lost(world: World) -> None:
    gen_id = lost_mid_answer(world, "half an ans")
    (outcome,) = world.settler().settle_expired()
    assert outcome.action == "worker_lost"
    last = world.events(gen_id)[-1]
    assert last.event == "error" and '"type":"worker_lost"' in last.data
    assert '"retryable":true' in last.data
    view = world.generations.view(gen_id, world.generations.load(gen_id) or {})
    assert view["status"] == "failed" and view["error"]["type"] == "worker_lost"
    assert view["text"] == "half an ans" and view["finished_at"]


def test_settle_after_refused_writes_ends_it_unavailable_and_says_so(world: World) -> None:
    gen_id = lost_mid_answer(world, "half")
    settler = world.settler()
    settler.pass_failed()  # Redis refused the last pass: an outage, not a lost worker
    (outcome,) = settler.settle_expired()
    assert outcome.action == "unavailable"
    last = world.events(gen_id)[-1]
    assert last.event == "error" and '"type":"unavailable"' in last.data


def test_settle_honours_a_pending_cancel_and_skips_ended_logs(world: World) -> None:
    cancelled, ended = world.create(), world.create()
    world.client.hset(world.keys.record(cancelled), "cancel", "user")
    world.log.append(ended, "done", {"finish_reason": "stop"}, {"status": "completed"})
    leases = Leases(world.client, world.keys)
    for gen_id in (cancelled, ended):
        leases.acquire([gen_id], "dead-worker")
        world.expire(gen_id)
    outcomes = {o.gen_id: o.action for o in world.settler().settle_expired()}
    assert outcomes == {cancelled: "cancelled", ended: "ended"}
    assert world.events(cancelled)[-1].event == "cancelled"
    assert [e.event for e in world.events(ended)] == ["status", "done"]


def test_hand_back_takes_only_the_owners_leases_at_once(world: World) -> None:
    mine, other = world.create(), world.create()
    leases = Leases(world.client, world.keys)
    leases.acquire([mine], "stopping")
    leases.acquire([other], "someone-else")
    outcomes = world.settler().hand_back([mine, other], "stopping")
    assert [(o.gen_id, o.action) for o in outcomes] == [(mine, "requeued")]
    assert leases.confirm(other, "someone-else")


def test_orphan_sweep_requeues_a_job_popped_but_never_leased(world: World) -> None:
    gen_id = world.create()
    queue = Queue(world.keys.queue_name("interactive"), connection=world.rq)
    world.rq.rpush(queue.intermediate_queue_key, gen_id)  # popped by a worker that died
    settler, seen = world.settler(), {}  # type: ignore[var-annotated]
    settler.sweep_intermediate(seen, now_s=100.0)
    assert queue.get_job_ids() == []  # first sighting: maybe a live worker mid-claim
    settler.sweep_intermediate(seen, now_s=100.0 + 60)
    assert queue.get_job_ids() == [gen_id]
    assert world.rq.llen(queue.intermediate_queue_key) == 0
