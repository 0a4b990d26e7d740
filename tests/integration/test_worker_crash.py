"""Crash safety with real processes: `kill -9` and SIGTERM (warm shutdown + hand back)."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.worker import Worker

from spool.events import decode_entry
from spool.keys import Keys
from tests.conftest import Api, StackFactory
from tests.harness import Stack, wait_until

ENV = {"SPOOL_WEB_GRACE_S": "2", "SPOOL_WORKER_SLOTS": "20"}
SETTLE_LIMIT_S = 15.0  # the bound from a worker's death to the settled event


@pytest.fixture
def clients(redis_server: Any) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    text = redis.Redis.from_url(redis_server.url, decode_responses=True)
    raw = redis.Redis.from_url(redis_server.url)
    yield text, raw
    text.close()
    raw.close()


def statuses(r: redis.Redis, keys: Keys, gen_id: str) -> list[str]:
    """The event names of a log, with status events spelled out."""
    names = []
    for raw in r.lrange(keys.log(gen_id), 0, -1):
        entry = decode_entry(raw)
        names.append(entry.data if entry.event == "status" else entry.event)
    return names


def compact(names: list[str]) -> list[str]:
    """Collapse runs of deltas, so logs compare by shape."""
    out: list[str] = []
    for name in names:
        if not (name == "delta" and out and out[-1] == "delta"):
            out.append(name)
    return out


def wait_field(r: redis.Redis, keys: Keys, gen_id: str, name: str, timeout: float = 30) -> str:
    value: str = wait_until(lambda: r.hget(keys.record(gen_id), name), timeout=timeout,
                            what=f"{gen_id} {name}")
    return value


QUEUED = '{"status":"queued"}'
IN_PROGRESS = '{"status":"in_progress"}'


def test_kill_9_settles_lost_and_reruns_unstarted(
        make_stack: StackFactory, clients: tuple[redis.Redis, redis.Redis]) -> None:
    r, raw = clients
    stack: Stack = make_stack(env=ENV)
    api, keys = Api(stack), Keys(stack.namespace)
    streaming = api.create("lost midway " * 60, mock={"tokens_per_second": 10, "ttft_ms": 10})
    waiting_text = "rerun from the start, exactly once."
    waiting = api.create(waiting_text, mock={"tokens_per_second": 100, "ttft_ms": 3000})
    wait_field(r, keys, streaming["id"], "output")
    wait_until(lambda: statuses(r, keys, waiting["id"])[-1] == IN_PROGRESS, what="in progress")

    stack.workers[0].kill()  # SIGKILL: no chance to clean up
    killed_ms = time.time() * 1000
    # Only the web process is alive now: its settle loop must notice.
    wait_field(r, keys, streaming["id"], "ended", timeout=SETTLE_LIMIT_S + 5)
    lost = api.generation(streaming["id"])
    assert lost["status"] == "failed" and lost["error"]["type"] == "worker_lost"
    assert lost["text"] and "lost midway".startswith(lost["text"][:11])
    last = decode_entry(r.lrange(keys.log(streaming["id"]), -1, -1)[0])
    assert last.event == "error" and '"retryable":true' in last.data
    assert int(r.hget(keys.record(streaming["id"]), "finished_ms") or 0) - killed_ms \
        <= SETTLE_LIMIT_S * 1000
    wait_until(lambda: statuses(r, keys, waiting["id"])[-1] == QUEUED, timeout=SETTLE_LIMIT_S + 5,
               what="unstarted generation requeued")
    assert r.hget(keys.record(waiting["id"]), "status") == "queued"

    stack.start_worker()
    wait_field(r, keys, waiting["id"], "ended", timeout=30)
    done = api.generation(waiting["id"])
    assert done["status"] == "completed" and done["text"] == waiting_text
    assert compact(statuses(r, keys, waiting["id"])) == [
        QUEUED, IN_PROGRESS, QUEUED, IN_PROGRESS, "delta", "done"]
    queue = keys.queue_name("interactive")
    assert streaming["id"] in FailedJobRegistry(queue, connection=raw).get_job_ids()
    assert Job.fetch(waiting["id"], connection=raw).get_status() == "finished"
    wait_until(lambda: StartedJobRegistry(queue, connection=raw).get_job_count(cleanup=False) == 0,
               timeout=10, what="no stale executions")


def test_sigterm_finishes_within_grace_then_hands_back_and_exits_0(
        make_stack: StackFactory, clients: tuple[redis.Redis, redis.Redis]) -> None:
    r, raw = clients
    stack = make_stack(env={**ENV, "SPOOL_SHUTDOWN_GRACE_S": "3"})
    api, keys = Api(stack), Keys(stack.namespace)
    short_text = "finishes inside the grace period"
    short = api.create(short_text, mock={"tokens_per_second": 8, "ttft_ms": 10})  # ~1 s
    long = api.create("too long to finish " * 40, mock={"tokens_per_second": 10, "ttft_ms": 10})
    silent_text = "had not started talking"
    silent = api.create(silent_text, mock={"tokens_per_second": 100, "ttft_ms": 5000})
    wait_field(r, keys, long["id"], "output")
    wait_until(lambda: statuses(r, keys, silent["id"])[-1] == IN_PROGRESS, what="in progress")

    worker = stack.workers[0]
    worker.signal(signal.SIGTERM)
    time.sleep(0.5)
    worker.signal(signal.SIGTERM)  # Heroku may send it twice
    after = api.create("arrives during shutdown", mock={"tokens_per_second": 100})
    assert worker.proc.wait(timeout=25) == 0

    # Everything was settled before the process exited, not after a lease expiry.
    assert api.generation(short["id"])["status"] == "completed"
    lost = api.generation(long["id"])
    assert lost["status"] == "failed" and lost["error"]["type"] == "worker_lost"
    assert r.hget(keys.record(silent["id"]), "status") == "queued"
    assert statuses(r, keys, after["id"]) == [QUEUED]  # the stopping worker took no new work
    name = f"{socket.gethostname()}.{worker.proc.pid}"
    assert name not in [w.name for w in Worker.all(connection=raw)]  # registered its death

    stack.start_worker()
    wait_field(r, keys, after["id"], "ended")
    wait_field(r, keys, silent["id"], "ended", timeout=60)
    assert api.generation(after["id"])["status"] == "completed"
    rerun = api.generation(silent["id"])
    assert rerun["status"] == "completed" and rerun["text"] == silent_text
    assert api.generation(short["id"])["text"] == short_text


def test_a_stalled_worker_that_lost_its_leases_writes_nothing_more(
        make_stack: StackFactory, clients: tuple[redis.Redis, redis.Redis]) -> None:
    r, _ = clients
    stack = make_stack(env=ENV)
    api, keys = Api(stack), Keys(stack.namespace)
    streaming = api.create("stalled midway " * 60, mock={"tokens_per_second": 10, "ttft_ms": 10})
    quiet_text = "written once, by the second worker"
    quiet = api.create(quiet_text, mock={"tokens_per_second": 100, "ttft_ms": 3000})
    wait_field(r, keys, streaming["id"], "output")
    wait_until(lambda: statuses(r, keys, quiet["id"])[-1] == IN_PROGRESS, what="in progress")

    stalled = stack.workers[0]
    stalled.signal(signal.SIGSTOP)  # alive, but silent past its lease deadline
    try:
        wait_field(r, keys, streaming["id"], "ended", timeout=SETTLE_LIMIT_S + 5)
        wait_until(lambda: statuses(r, keys, quiet["id"])[-1] == QUEUED,
                   timeout=SETTLE_LIMIT_S + 5, what="quiet one requeued")
        stack.start_worker()
        wait_until(lambda: statuses(r, keys, quiet["id"])[-1] == IN_PROGRESS,
                   what="rerun started")
        streaming_log = r.lrange(keys.log(streaming["id"]), 0, -1)
    finally:
        # Resume it while the second worker waits for its first token: the
        # stalled runner's first token is due at once. Only the fence (the
        # lease check before a first output, and the refresh that finds the
        # lease taken) keeps it from writing into the rerun.
        stalled.signal(signal.SIGCONT)
    wait_field(r, keys, quiet["id"], "ended", timeout=30)
    wait_until(lambda: "was taken over" in stalled.output(), timeout=10, what="lease loss noticed")
    assert api.generation(quiet["id"])["text"] == quiet_text
    record = r.hgetall(keys.record(quiet["id"]))
    # Written by the rerun, after its own 3 s to first token (the stalled
    # runner's text would have landed at once, right after SIGCONT).
    assert int(record["finished_ms"]) - int(record["started_ms"]) >= 3000
    assert compact(statuses(r, keys, quiet["id"])) == [
        QUEUED, IN_PROGRESS, QUEUED, IN_PROGRESS, "delta", "done"]
    assert r.lrange(keys.log(streaming["id"]), 0, -1) == streaming_log
    assert api.generation(streaming["id"])["error"]["type"] == "worker_lost"
    assert stalled.alive()
