"""Generation leases and the settle rule for generations whose worker is gone.

A worker holds a lease on every generation it runs: `lease(gen)` names the
owner, and the `running` sorted set scores each generation by its lease
deadline, computed on the Redis clock (no skew between hosts). The worker
extends all of its leases in one script call per tick. Any process (worker
or web) that finds a passed deadline takes the lease over with an atomic
script, so exactly one process settles each generation:

- a cancel was requested: end it `cancelled`;
- nothing was emitted yet (no `output` field): put it back on its queue;
- else: end it with `error {type: worker_lost, retryable: true}`.

The scripts touch the running set and lease keys together, which is fine on
a single Redis (RQ itself needs one); they are not Redis Cluster scripts.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry

from spool.batches import on_generation_end
from spool.clock import now_ms
from spool.connection import connect, is_cluster
from spool.events import CANCELLED, ERROR, STATUS
from spool.generations import cancel_fields
from spool.keys import PRIORITIES, Keys
from spool.limits import queue_release
from spool.log import EventLog
from spool.queue import FAILURE_TTL_S, enqueue_generation

log = logging.getLogger("spool.lease")
LEASE_POOL_SIZE = 16  # connections to the RQ Redis for leases (callers wait for one)

LEASE_TTL_MS = 10_000  # deadline after the last refresh; refreshed every ~2 s
SETTLE_HOLD_MS = 30_000  # how long a settler holds a taken lease before others may retry
CONFIRM_MARGIN_MS = 3_000  # first output needs at least this much lease left
SETTLE_BATCH = 200  # expired generations looked at per pass
SETTLE_INTERVAL_S = 2.0  # a death is settled within lease ttl + this (+ jitter)
SETTLE_JITTER_S = 0.5  # spreads the passes of many processes
# A lease that lapsed while this process saw Redis refuse writes lapsed
# because its worker could not extend it, not because the worker died: such
# a generation ends `unavailable` (retryable), not `worker_lost`.
OUTAGE_MEMORY_S = 30.0
ORPHAN_AGE_S = 10.0  # an unleased job this long in RQ's intermediate list was orphaned

# The running index outlives any lease by far; every write renews it, so it
# only expires once no process has touched it for a day (bounded memory).
INDEX_TTL_MS = 86_400_000

# KEYS: running, lease 1..n; ARGV: owner, ttl ms, gen 1..n
_ACQUIRE = """
local t = redis.call('TIME')
local deadline = t[1] * 1000 + math.floor(t[2] / 1000) + ARGV[2]
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', 2 * ARGV[2])
  redis.call('ZADD', KEYS[1], deadline, ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], INDEX_TTL_MS)
return #KEYS - 1
"""

# KEYS: running, lease 1..n; ARGV: owner, ttl ms, gen 1..n. Returns the gens no longer ours.
_REFRESH = """
local t = redis.call('TIME')
local deadline = t[1] * 1000 + math.floor(t[2] / 1000) + ARGV[2]
local lost = {}
for i = 2, #KEYS do
  local gen = ARGV[i + 1]
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], 2 * ARGV[2])
    redis.call('ZADD', KEYS[1], 'XX', deadline, gen)
  else
    lost[#lost + 1] = gen
  end
end
redis.call('PEXPIRE', KEYS[1], INDEX_TTL_MS)
return lost
"""

# KEYS: running, lease; ARGV: gen, owner, margin ms. 1 while ours with margin left.
_CONFIRM = """
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if tonumber(score) - now < tonumber(ARGV[3]) then return 0 end
return 1
"""

# KEYS: running, lease; ARGV: gen, taker, hold ms, expected owner ('' = any expired).
# Takes the lease if it is the expected owner's, or (no expected owner) if its
# deadline passed. Atomic, so exactly one caller wins each generation.
_TAKE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if ARGV[4] ~= '' then
  if redis.call('GET', KEYS[2]) ~= ARGV[4] then return 0 end
elseif tonumber(score) > now then
  return 0
end
redis.call('ZADD', KEYS[1], now + ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], INDEX_TTL_MS)
redis.call('SET', KEYS[2], ARGV[2], 'PX', 2 * ARGV[3])
return 1
"""

# KEYS: running, lease; ARGV: gen, owner. Drops the lease only if still the owner's.
_RELEASE = """
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""


# KEYS: running, lease 1..n; ARGV: owner, gen 1..n. Drops each lease still the owner's.
_RELEASE_MANY = """
local n = 0
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
"""


def _with_constants(script: str) -> str:
    return script.replace("INDEX_TTL_MS", str(INDEX_TTL_MS))


class Leases:
    """Lease operations for one namespace."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl_ms: int = LEASE_TTL_MS) -> None:
        self.client = client
        self.keys = keys
        self.ttl_ms = ttl_ms
        self._acquire = client.register_script(_with_constants(_ACQUIRE))
        self._refresh = client.register_script(_with_constants(_REFRESH))
        self._confirm = client.register_script(_CONFIRM)
        self._take = client.register_script(_with_constants(_TAKE))
        self._release = client.register_script(_RELEASE)
        self._release_many = client.register_script(_RELEASE_MANY)

    def _keys(self, gen_id: str) -> list[str]:
        return [self.keys.running(), self.keys.lease(gen_id)]

    def acquire(self, gen_ids: list[str], owner: str) -> None:
        """Start (or take over) the leases of generations just dequeued, in one call."""
        if gen_ids:
            keys = [self.keys.running(), *(self.keys.lease(g) for g in gen_ids)]
            self._acquire(keys=keys, args=[owner, self.ttl_ms, *gen_ids])

    def _many(self, gen_ids: list[str]) -> list[str]:
        return [self.keys.running(), *(self.keys.lease(g) for g in gen_ids)]

    def queue_acquire(self, pipe: Any, gen_ids: list[str], owner: str) -> None:
        """`acquire` queued on `pipe` (of any client on the lease Redis): one EVALSHA.

        A raw EVALSHA, not the Script object: redis-py would add a SCRIPT
        EXISTS round trip to every pipeline carrying a Script. Callers load
        the scripts first (`load_scripts`) and redo a NOSCRIPT reply alone.
        """
        keys = self._many(gen_ids)
        pipe.evalsha(self._acquire.sha, len(keys), *keys, owner, self.ttl_ms, *gen_ids)

    def queue_release(self, pipe: Any, gen_ids: list[str], owner: str) -> None:
        """Release `owner`'s leases of `gen_ids`, queued on `pipe` (one EVALSHA)."""
        keys = self._many(gen_ids)
        pipe.evalsha(self._release_many.sha, len(keys), *keys, owner, *gen_ids)

    def release_many(self, gen_ids: list[str], owner: str) -> int:
        """Release `owner`'s leases of `gen_ids` in one call (the NOSCRIPT fallback)."""
        return int(self._release_many(keys=self._many(gen_ids), args=[owner, *gen_ids]))

    def load_scripts(self, client: Any = None) -> None:
        """Load the pipelined scripts on `client` (default: the lease client)."""
        target = client if client is not None else self.client
        for script in (self._acquire, self._release_many):
            target.script_load(script.script)

    def refresh(self, gen_ids: list[str], owner: str) -> list[str]:
        """Extend all of `owner`'s leases in one call; returns those it lost."""
        if not gen_ids:
            return []
        keys = [self.keys.running(), *(self.keys.lease(g) for g in gen_ids)]
        lost = self._refresh(keys=keys, args=[owner, self.ttl_ms, *gen_ids])
        return [str(g) for g in lost]

    def confirm(self, gen_id: str, owner: str, margin_ms: int = CONFIRM_MARGIN_MS) -> bool:
        """True while `owner` holds the lease with at least `margin_ms` left.

        No settler can take a lease before its deadline, so output written
        within the margin cannot race a re-enqueue of the same generation.
        """
        return bool(self._confirm(keys=self._keys(gen_id), args=[gen_id, owner, margin_ms]))

    def take(self, gen_id: str, taker: str, expected_owner: str = "") -> bool:
        """Take an expired lease (or `expected_owner`'s lease) to settle it."""
        args: list[str | int] = [gen_id, taker, SETTLE_HOLD_MS, expected_owner]
        return bool(self._take(keys=self._keys(gen_id), args=args))

    def release(self, gen_id: str, owner: str) -> bool:
        """Drop `owner`'s lease (after the generation ended or was settled)."""
        return bool(self._release(keys=self._keys(gen_id), args=[gen_id, owner]))

    def expired(self, limit: int = SETTLE_BATCH) -> list[str]:
        """Generations whose deadline passed by this host's clock (a hint: `take` decides)."""
        found = self.client.zrangebyscore(self.keys.running(), "-inf", now_ms(), 0, limit)
        return [str(g) for g in found]


@dataclass(frozen=True)
class Outcome:
    """What settling did to one generation."""

    gen_id: str
    action: str  # requeued | worker_lost | unavailable | cancelled | ended | missing


def lease_store(spool_client: Any, rq_redis_url: str) -> Any:
    """Where leases live: with the event log on a single Redis; on the RQ
    Redis when the event log is on a Cluster.

    The lease scripts update the `running` index and several generations'
    lease keys at once, which a Cluster refuses across slots. Leases are
    coordination data like the job queues, and RQ's Redis is never a Cluster.
    """
    if not is_cluster(spool_client):
        return spool_client
    return connect(rq_redis_url, max_connections=LEASE_POOL_SIZE, blocking=True)


class Settler:
    """Applies the settle rule (needs Spool's Redis and RQ's, which may differ)."""

    def __init__(self, event_log: EventLog, rq_client: redis.Redis, job_timeout_s: int,
                 lease_client: redis.Redis | None = None) -> None:
        self.log = event_log
        self.client = event_log.client
        self.keys = event_log.keys
        self.rq = rq_client
        self.job_timeout_s = job_timeout_s
        self.leases = Leases(lease_client or self.client, self.keys)
        self.token = "settler:" + secrets.token_hex(8)
        self.failed_at: float | None = None  # monotonic time of the last failed pass

    def pass_failed(self) -> None:
        """A settle pass met a Redis error (refused writes, or no Redis at all)."""
        self.failed_at = time.monotonic()

    def _lost_type(self) -> str:
        recent = (self.failed_at is not None
                  and time.monotonic() - self.failed_at < OUTAGE_MEMORY_S)
        return "unavailable" if recent else "worker_lost"

    def settle_expired(self) -> list[Outcome]:
        """Settle every generation whose lease expired and that we win the race for."""
        outcomes = []
        for gen_id in self.leases.expired():
            if self.leases.take(gen_id, self.token):
                outcomes.append(self._settle_taken(gen_id))
        return outcomes

    def hand_back(self, gen_ids: list[str], owner: str) -> list[Outcome]:
        """A stopping worker gives its generations back by the same rule, at once."""
        outcomes = []
        for gen_id in gen_ids:
            if self.leases.take(gen_id, self.token, expected_owner=owner):
                outcomes.append(self._settle_taken(gen_id))
        return outcomes

    def _settle_taken(self, gen_id: str) -> Outcome:
        # On an error the taken lease is kept: it lapses after SETTLE_HOLD_MS
        # and the next pass (here or elsewhere) settles the generation again.
        outcome = self.settle(gen_id)
        self.leases.release(gen_id, self.token)
        log.warning("settled generation %s: %s", gen_id, outcome.action)
        return outcome

    def settle(self, gen_id: str) -> Outcome:
        """Apply the rule to a generation whose lease this settler holds."""
        record: dict[str, str] = self.client.hgetall(self.keys.record(gen_id))  # type: ignore[assignment]
        if not record:
            self._retire_rq_job(gen_id, None)
            return Outcome(gen_id, "missing")
        if "ended" in record:
            # Its worker may have died between the terminal event and its release.
            queue_release(self.client, self.keys, gen_id, record)
            self._retire_rq_job(gen_id, None)
            return Outcome(gen_id, "ended")
        if record.get("cancel"):
            reason = record["cancel"]
            self.log.append(gen_id, CANCELLED, {"reason": reason}, fields=cancel_fields(reason))
            queue_release(self.client, self.keys, gen_id, record)
            self._retire_rq_job(gen_id, None)
            self._count_batch_row(gen_id, record)
            return Outcome(gen_id, "cancelled")
        if record.get("output"):
            error_type = self._end_lost(gen_id, record)
            queue_release(self.client, self.keys, gen_id, record)
            self._retire_rq_job(gen_id, f"{error_type.replace('_', ' ')}: its lease expired "
                                        "mid-generation")
            self._count_batch_row(gen_id, record)
            return Outcome(gen_id, error_type)
        self._requeue(gen_id, record)
        return Outcome(gen_id, "requeued")

    def _count_batch_row(self, gen_id: str, record: dict[str, str]) -> None:
        """A settled batch row counts at once, not at the batch sweeper's next pass."""
        if record.get("batch_id"):
            ended: dict[str, str] = self.client.hgetall(self.keys.record(gen_id))  # type: ignore[assignment]
            on_generation_end(self.client, self.keys, gen_id, ended)

    def _end_lost(self, gen_id: str, record: dict[str, str]) -> str:
        """End a generation that had output with one retryable error; its type."""
        error_type = self._lost_type()
        message = ("the event store refused writes for too long; retry the request"
                   if error_type == "unavailable"
                   else "the worker running this generation was lost; retry the request")
        metrics = orjson.loads(record["metrics"]) if record.get("metrics") else {}
        if record.get("started_ms"):
            metrics["duration_ms"] = now_ms() - int(record["started_ms"])
        self.log.append(gen_id, ERROR, {"type": error_type, "message": message,
                                        "retryable": True}, {
            "status": "failed", "finish_reason": "error",
            "error": {"type": error_type, "message": message},
            "metrics": metrics, "finished_ms": now_ms(),
        })
        return error_type

    def _requeue(self, gen_id: str, record: dict[str, str]) -> None:
        if record.get("status") != "queued":
            self.log.append(gen_id, STATUS, {"status": "queued"}, {"status": "queued"})
        self._retire_rq_job(gen_id, None)
        priority = record.get("priority") or PRIORITIES[0]
        # A dead worker may have left it in RQ's intermediate list; taking it
        # out first keeps the orphan sweep from enqueueing it a second time.
        self.rq.lrem(self._intermediate_key(priority), 0, gen_id)
        # It already waited its turn once: back to the front of its queue.
        enqueue_generation(self.rq, self.keys, gen_id, priority, self.job_timeout_s,
                           at_front=True)

    def _retire_rq_job(self, gen_id: str, failure: str | None) -> None:
        """Drop the lost run's RQ executions; with `failure`, move the job to failed."""
        try:
            job = Job.fetch(gen_id, connection=self.rq)
        except Exception:  # gone, or not deserializable: nothing of RQ's to fix
            return
        started = StartedJobRegistry(job.origin, connection=self.rq)
        executions_key = f"rq:executions:{gen_id}"
        execution_ids = [e.decode() if isinstance(e, bytes) else str(e)
                         for e in self.rq.zrange(executions_key, 0, -1)]
        pipe: Any = self.rq.pipeline()
        for execution_id in execution_ids:
            pipe.zrem(started.key, f"{gen_id}:{execution_id}")
            pipe.delete(f"rq:execution:{gen_id}:{execution_id}")
        pipe.delete(executions_key)
        if failure is not None:
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            FailedJobRegistry(job.origin, connection=self.rq).add(
                job, ttl=FAILURE_TTL_S, exc_string=failure, pipeline=pipe)
        pipe.execute()

    def _intermediate_key(self, priority: str) -> str:
        return Queue(self.keys.queue_name(priority), connection=self.rq).intermediate_queue_key

    def sweep_intermediate(self, first_seen: dict[str, float], now_s: float) -> None:
        """Requeue jobs popped by a worker that died before leasing them.

        A job sits in RQ's intermediate list only between a worker's pop and
        its lease (a round trip or two). One still there, unleased, after
        ORPHAN_AGE_S was orphaned; LREM decides which process requeues it
        (a live worker also LREMs before running a job, and drops it on 0).
        `first_seen` is this process's memory between sweeps.
        """
        present: set[str] = set()
        for priority in PRIORITIES:
            key = self._intermediate_key(priority)
            for raw in self.rq.lrange(key, 0, -1):
                gen_id = raw.decode() if isinstance(raw, bytes) else str(raw)
                present.add(gen_id)
                if self.leases.client.exists(self.keys.lease(gen_id)):
                    first_seen.pop(gen_id, None)
                    continue
                seen = first_seen.setdefault(gen_id, now_s)
                if now_s - seen >= ORPHAN_AGE_S and self.rq.lrem(key, 1, gen_id):
                    first_seen.pop(gen_id, None)
                    log.warning("requeued orphaned job %s", gen_id)
                    enqueue_generation(self.rq, self.keys, gen_id, priority, self.job_timeout_s,
                                       at_front=True)
        for gone in set(first_seen) - present:
            del first_seen[gone]


def settle_forever(settler: Settler) -> None:
    """Settle expired leases and orphaned jobs every few seconds, forever.

    Run it in a greenlet (worker and web processes are gevent-patched, so
    `time.sleep` yields).
    """
    first_seen: dict[str, float] = {}
    while True:
        time.sleep(SETTLE_INTERVAL_S + random.uniform(-SETTLE_JITTER_S, SETTLE_JITTER_S))
        try:
            settler.settle_expired()
            settler.sweep_intermediate(first_seen, time.monotonic())
        except redis.RedisError as exc:
            settler.pass_failed()
            log.warning("settle pass failed: %s", type(exc).__name__)
        except Exception:
            log.exception("settle pass failed")
