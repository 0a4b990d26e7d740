"""One worker process, many generations at once (real gunicorn, worker and Redis).

Concurrency is shown by overlap (how many generations were in progress at
the same moment), never by a wall-clock limit.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.command import send_stop_job_command
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.worker import Worker

from spool.events import decode_entry
from spool.keys import Keys
from spool.queue import RESULT_TTL_S
from tests.conftest import Api
from tests.harness import Stack, wait_until

N = 100
SLOTS = 300
ENV = {
    "SPOOL_WORKER_SLOTS": str(SLOTS),
    "SPOOL_MAX_ACTIVE": "100000",
    "SPOOL_RATE_LIMIT": "100000",
    "SPOOL_WEB_GRACE_S": "2",
    "SPOOL_MAX_TOKENS_LIMIT": "1000000",
}
HUGE_CHUNKS = 480_000  # under the mock text limit (500,000 characters)


@pytest.fixture(scope="module")
def wstack(redis_server: Any) -> Iterator[Stack]:
    stack = Stack(redis_server.url, ENV)
    stack.start_web()
    stack.start_worker()
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def wapi(wstack: Stack) -> Api:
    return Api(wstack)


@pytest.fixture(scope="module")
def r(wstack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(wstack.redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="module")
def rq_conn(wstack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(wstack.redis_url)
    yield client
    client.close()


def records(r: redis.Redis, keys: Keys, ids: list[str]) -> list[dict[str, str]]:
    pipe = r.pipeline(transaction=False)
    for gen_id in ids:
        pipe.hgetall(keys.record(gen_id))
    return pipe.execute()


def wait_ended(r: redis.Redis, keys: Keys, ids: list[str],
               timeout: float = 60) -> list[dict[str, str]]:
    def ended() -> list[dict[str, str]] | None:
        recs = records(r, keys, ids)
        return recs if all("ended" in x for x in recs) else None

    found: list[dict[str, str]] = wait_until(ended, timeout=timeout, interval=0.2,
                                             what="generations to end")
    return found


def log_events(r: redis.Redis, keys: Keys, gen_id: str) -> list[Any]:
    return [decode_entry(raw) for raw in r.lrange(keys.log(gen_id), 0, -1)]


def peak_overlap(recs: list[dict[str, str]]) -> int:
    edges = sorted([(int(x["started_ms"]), 1) for x in recs]
                   + [(int(x["finished_ms"]), -1) for x in recs])
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def text_of(i: int) -> str:
    return f"generation {i:03d} says: " + "lorem ipsum dolor sit amet " * 4


def test_many_generations_at_once_exact_text_and_rq_registries(
        wapi: Api, wstack: Stack, r: redis.Redis, rq_conn: redis.Redis) -> None:
    keys = Keys(wstack.namespace)
    queue_name = keys.queue_name("interactive")
    [before] = [w for w in Worker.all(connection=rq_conn) if queue_name in w.queue_names()]
    ids = [wapi.create(text_of(i), mock={"tokens_per_second": 6, "ttft_ms": 50})["id"]
           for i in range(N)]
    started = StartedJobRegistry(queue_name, connection=rq_conn)
    # While they run, RQ's started registry holds each one and `rq info` says so.
    wait_until(lambda: started.get_job_count(cleanup=False) >= N // 2, timeout=30,
               what="jobs in the started registry")
    workers = Worker.all(connection=rq_conn)
    mine = [w for w in workers if queue_name in w.queue_names()]
    assert len(mine) == 1 and mine[0].get_state() == "busy"
    rq_bin = shutil.which("rq", path=str(Path(sys.executable).parent)) or "rq"
    info = subprocess.run([rq_bin, "info", "--url", wstack.redis_url, queue_name],
                          capture_output=True, text=True, timeout=30, check=True).stdout
    executing = int(info.split(queue_name, 1)[1].split(" executing")[0].rsplit(",", 1)[-1])
    assert executing >= N // 2, info
    assert mine[0].name in info and "busy" in info

    recs = wait_ended(r, keys, ids)
    assert [x["status"] for x in recs] == ["completed"] * N
    for i, gen_id in enumerate(ids):
        assert r.get(keys.text(gen_id)) == text_of(i)
        events = log_events(r, keys, gen_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert [e.terminal for e in events].count(True) == 1 and events[-1].event == "done"
    assert peak_overlap(recs) >= N // 2  # one-at-a-time would be 1
    finished = FinishedJobRegistry(queue_name, connection=rq_conn)
    wait_until(lambda: started.get_job_count(cleanup=False) == 0, timeout=10,
               what="started registry to empty")
    assert set(ids) <= set(finished.get_job_ids())
    assert {Job.fetch(i, connection=rq_conn).get_status() for i in ids} == {"finished"}
    # The job as RQ reads it back: its call, its start and end, its result.
    job = Job.fetch(ids[0], connection=rq_conn)
    assert job.args == (ids[0],) and job.worker_name == mine[0].name
    assert job.started_at is not None and job.ended_at is not None
    assert job.enqueued_at <= job.started_at <= job.ended_at
    result = job.latest_result()
    assert result is not None and result.type == Result.Type.SUCCESSFUL
    assert 0 < rq_conn.ttl(job.key) <= RESULT_TTL_S
    # RQ's worker counters (added up once per finished batch): every job, its time.
    worker = Worker.find_by_key(mine[0].key, connection=rq_conn)
    assert worker is not None and worker.key == before.key
    assert worker.successful_job_count - before.successful_job_count == N
    assert worker.failed_job_count == before.failed_job_count
    ran_s = sum(int(x["finished_ms"]) - int(x["started_ms"]) for x in recs) / 1000
    assert ran_s * 0.9 <= worker.total_working_time - before.total_working_time <= ran_s * 1.5
    wait_until(lambda: worker.refresh() or worker.get_state() == "idle", timeout=5,
               what="worker idle")


def test_cancel_within_a_second_while_100_others_run(
        wapi: Api, wstack: Stack, r: redis.Redis) -> None:
    keys = Keys(wstack.namespace)
    slow = {"tokens_per_second": 20, "ttft_ms": 50}
    others = [wapi.create(text_of(i) * 3, mock=slow)["id"] for i in range(N)]
    target = wapi.create("cancel me " * 100, mock=slow)["id"]
    wait_until(lambda: r.hget(keys.record(target), "output"), timeout=30,
               what="target streaming")
    sent_ms = time.time() * 1000
    resp = wapi.post(f"/v1/generations/{target}/cancel")
    assert resp.status_code == 202, resp.text
    (rec,) = wait_ended(r, keys, [target], timeout=10)
    assert rec["status"] == "cancelled" and rec["finish_reason"] == "cancelled"
    last = log_events(r, keys, target)[-1]
    assert last.event == "cancelled" and '"reason":"user"' in last.data
    assert int(rec["finished_ms"]) - sent_ms <= 1000, "cancel took longer than 1 s"
    assert sum("ended" in x for x in records(r, keys, others)) < N // 2  # they were still running
    recs = wait_ended(r, keys, others, timeout=90)
    assert {x["status"] for x in recs} == {"completed"}
    assert all(r.get(keys.text(g)) == text_of(i) * 3 for i, g in enumerate(others))


def test_a_generation_that_never_yields_does_not_starve_others(
        wapi: Api, wstack: Stack, r: redis.Redis) -> None:
    keys = Keys(wstack.namespace)
    huge_text = "abc" * (HUGE_CHUNKS // 3)  # no pacing at all: only the mock's forced yields
    huge = wapi.create(huge_text, mock={"tokens_per_second": 0, "ttft_ms": 0, "chunk": "char"},
                       max_tokens=HUGE_CHUNKS)["id"]
    wait_until(lambda: r.hget(keys.record(huge), "output"), timeout=30, what="huge streaming")
    normal = wapi.create("a normal answer, paced " * 3,
                         mock={"tokens_per_second": 100, "ttft_ms": 10})["id"]
    (rec,) = wait_ended(r, keys, [normal], timeout=60)
    huge_then = r.hgetall(keys.record(huge))
    assert rec["status"] == "completed"
    assert "ended" not in huge_then, "the normal generation waited for the huge one"
    (huge_rec,) = wait_ended(r, keys, [huge], timeout=120)
    assert huge_rec["status"] == "completed" and r.strlen(keys.text(huge)) == len(huge_text)


def test_rq_stop_job_command_cancels_the_generation(
        wapi: Api, wstack: Stack, r: redis.Redis, rq_conn: redis.Redis) -> None:
    keys = Keys(wstack.namespace)
    gen_id = wapi.create("stop me " * 200, mock={"tokens_per_second": 20, "ttft_ms": 10})["id"]
    wait_until(lambda: r.hget(keys.record(gen_id), "output"), timeout=30, what="streaming")
    send_stop_job_command(rq_conn, gen_id)
    (rec,) = wait_ended(r, keys, [gen_id], timeout=10)
    assert rec["status"] == "cancelled"
    queue_name = keys.queue_name("interactive")
    failed = FailedJobRegistry(queue_name, connection=rq_conn)
    wait_until(lambda: gen_id in failed.get_job_ids(), timeout=10, what="job in failed registry")
    assert Job.fetch(gen_id, connection=rq_conn).get_status() == "stopped"
