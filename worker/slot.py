"""One in-flight job of the concurrent worker, and where its bookkeeping goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gevent
import hiredis
import redis
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue

from spool.connection import is_cluster
from spool.lease import Leases
from spool.replies import exchange


@dataclass(eq=False)
class Slot:
    """One in-flight job: filled in by the claim, run by its own greenlet."""

    job_id: str
    queue: Queue
    batch: bool
    job: Job | None = None
    record: dict[str, str] | None = None  # the generation's record as claimed (None: gone)
    started_ms: int | None = None  # the claim appended `in_progress` at this time
    greenlet: gevent.Greenlet | None = None
    execution: Execution | None = None
    leased: bool = False
    performing: bool = False
    stopped: bool = False  # RQ stop-job: the job ends STOPPED
    gone: bool = False  # lease lost or handed back: the settler owns the outcome


def batch_cap(slots: int, share: float) -> int:
    """Slots batch jobs may hold: floor(slots * share), at least 1 unless share is 0."""
    cap = int(slots * share)
    return max(cap, 1) if share > 0 else 0


@dataclass
class Stores:
    """The Redis clients of the job path, and which of them share one server.

    With Spool's keys, the leases and RQ on one Redis (the default: no
    RQ_REDIS_URL, no Cluster), every claim or finish of a tick is one
    pipeline on the RQ client (bytes; Spool's replies are decoded here).
    """

    spool: Any  # Spool's client (decoded strings; maybe a Cluster)
    rq: redis.Redis  # RQ's client (bytes)
    leases: Leases  # on the lease Redis (Spool's, or RQ's under a Cluster)
    shared: bool

    def pipelines(self) -> dict[str, Any]:
        """One pipeline per role ("rq", "lease", "spool"), shared where the server is."""
        rq = self.rq.pipeline(transaction=False)
        if self.shared:
            return {"rq": rq, "lease": rq, "spool": rq}
        lease = self.leases.client.pipeline(transaction=False)
        spool = lease if self.leases.client is self.spool else \
            self.spool.pipeline(transaction=False)
        return {"rq": rq, "lease": lease, "spool": spool}


def text(value: Any) -> str:
    """A reply as text (the RQ client does not decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def text_hash(raw: Any) -> dict[str, str] | None:
    """An HGETALL reply as a dict of text (None when the hash does not exist)."""
    if not raw or isinstance(raw, Exception):
        return None
    return {text(k): text(v) for k, v in raw.items()}


def run_pipelines(pipes: dict[str, Any]) -> dict[int, list[Any]]:
    """Execute each distinct pipeline once; replies by pipeline id (errors as values).

    Replies are raw (no redis-py response callbacks: an HGETALL is a flat
    list) on a single node, where the commands are packed with hiredis and
    sent on one connection: redis-py's pipeline bookkeeping cost more CPU
    than the commands (the event writer does the same).
    """
    replies: dict[int, list[Any]] = {}
    for pipe in pipes.values():
        if id(pipe) in replies:
            continue
        if not len(pipe):
            replies[id(pipe)] = []
        elif is_cluster(pipe):
            replies[id(pipe)] = pipe.execute(raise_on_error=False)
        else:
            replies[id(pipe)] = _send_raw(pipe)
    return replies


def _send_raw(pipe: Any) -> list[Any]:
    """The commands queued on `pipe`, sent packed on one connection; replies in order."""
    stack = pipe.command_stack
    packed = b"".join(hiredis.pack_command(tuple(args)) for args, _ in stack)
    pool = pipe.connection_pool
    conn = pool.get_connection()
    try:
        return exchange(conn, packed, len(stack))
    finally:
        pool.release(conn)
        pipe.reset()


def as_hash(raw: Any) -> Any:
    """An HGETALL reply as a dict, whether raw (a flat list) or through redis-py."""
    if isinstance(raw, list):
        return dict(zip(raw[::2], raw[1::2], strict=True))
    return raw
