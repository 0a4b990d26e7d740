"""Queues and limits: interactive ahead of a batch backlog, batch share, job timeout."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.registry import FailedJobRegistry

from spool.keys import Keys
from tests.conftest import Api
from tests.harness import Stack, wait_until

SLOTS = 4
BATCH_SHARE = 0.5  # -> at most 2 batch generations at once
JOB_TIMEOUT_S = 3
ENV = {
    "SPOOL_WORKER_SLOTS": str(SLOTS),
    "SPOOL_BATCH_SHARE": str(BATCH_SHARE),
    "SPOOL_JOB_TIMEOUT_S": str(JOB_TIMEOUT_S),
    "SPOOL_WEB_GRACE_S": "2",
}


@pytest.fixture(scope="module")
def qstack(redis_server: Any) -> Iterator[Stack]:
    stack = Stack(redis_server.url, ENV)
    stack.start_web()
    stack.start_worker()
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def r(qstack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(qstack.redis_url, decode_responses=True)
    yield client
    client.close()


def wait_ended(r: redis.Redis, keys: Keys, ids: list[str], timeout: float = 60
               ) -> list[dict[str, str]]:
    def ended() -> list[dict[str, str]] | None:
        recs = [r.hgetall(keys.record(gen_id)) for gen_id in ids]
        return recs if all("ended" in rec for rec in recs) else None

    found: list[dict[str, str]] = wait_until(ended, timeout=timeout, interval=0.2,
                                             what="generations to end")
    return found


def max_overlap(spans: list[tuple[int, int]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_interactive_is_served_ahead_of_a_batch_backlog(qstack: Stack, r: redis.Redis) -> None:
    api, keys = Api(qstack), Keys(qstack.namespace)
    paced = {"tokens_per_second": 20, "ttft_ms": 10}  # ~0.5 s each
    batch = [api.create(f"batch row {i} " * 3, mock=paced, priority="batch")["id"]
             for i in range(10)]
    person = api.create("a person is waiting", mock=paced)["id"]
    recs = wait_ended(r, keys, [*batch, person])
    assert {rec["status"] for rec in recs} == {"completed"}
    spans = [(int(rec["started_ms"]), int(rec["finished_ms"])) for rec in recs[:-1]]
    assert max_overlap(spans) <= int(SLOTS * BATCH_SHARE)  # batch never took the other slots
    person_started = int(recs[-1]["started_ms"])
    # Only the batch rows already running when the person arrived went first.
    assert sum(start < person_started for start, _ in spans) <= int(SLOTS * BATCH_SHARE)
    assert max(start for start, _ in spans) > person_started  # the backlog was still there


def test_job_timeout_ends_with_error_timeout(qstack: Stack, r: redis.Redis) -> None:
    api, keys = Api(qstack), Keys(qstack.namespace)
    gen_id = api.create("far too slow " * 40, mock={"tokens_per_second": 5, "ttft_ms": 10})["id"]
    wait_ended(r, keys, [gen_id], timeout=JOB_TIMEOUT_S + 20)
    view = api.generation(gen_id)
    assert view["status"] == "failed" and view["error"]["type"] == "timeout"
    assert view["text"]  # it had streamed part of the answer before the limit
    last = r.lrange(keys.log(gen_id), -1, -1)[0]
    assert " error " in last and '"type":"timeout"' in last
    raw = redis.Redis.from_url(qstack.redis_url)
    failed = FailedJobRegistry(keys.queue_name("interactive"), connection=raw)
    wait_until(lambda: gen_id in failed.get_job_ids(), timeout=10, what="job in failed registry")
    assert Job.fetch(gen_id, connection=raw).get_status() == "failed"
    raw.close()


def test_processes_flag_runs_a_supervised_pool_that_stops_cleanly(qstack: Stack,
                                                                   r: redis.Redis) -> None:
    before = qstack.worker_count()
    pool = qstack.start_worker(["--processes", "2", "--slots", "3"])
    wait_until(lambda: qstack.worker_count() == before + 2, timeout=30, what="two pool workers")
    api, keys = Api(qstack), Keys(qstack.namespace)
    ids = [api.create(f"pooled {i}")["id"] for i in range(6)]
    assert {rec["status"] for rec in wait_ended(r, keys, ids)} == {"completed"}
    pool.signal(signal.SIGTERM)
    assert pool.proc.wait(timeout=30) == 0
    wait_until(lambda: qstack.worker_count() == before, timeout=10, what="pool workers gone")
