"""The worker's periodic and shutdown duties: RQ heartbeats, maintenance, hand back.

Functions of the running `SpoolWorker` (kept apart from its dispatch loop).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

import gevent
import redis
from rq.utils import now

from worker.claim import RQ_HEARTBEAT_TTL_S
from worker.lease import HandBack

if TYPE_CHECKING:
    from worker.worker import SpoolWorker

log = logging.getLogger("spool.worker")


def heartbeat_forever(worker: SpoolWorker, interval_s: float) -> None:
    """RQ's worker heartbeat, every execution's and job's, and RQ's maintenance."""
    while True:
        gevent.sleep(interval_s)
        try:
            rq_heartbeat(worker)
            if worker.should_run_maintenance_tasks:
                worker.clean_registries()
        except redis.RedisError as exc:
            log.warning("RQ heartbeat failed: %s", type(exc).__name__)


def rq_heartbeat(worker: SpoolWorker) -> None:
    """Worker, executions and jobs in one pipeline (RQ's own do one job)."""
    with worker.connection.pipeline() as pipe:
        worker.heartbeat(pipeline=pipe)
        for slot in list(worker.running.values()):
            if slot.execution is not None and slot.job is not None and not slot.gone:
                registry = slot.queue.started_job_registry
                slot.execution.heartbeat(registry, RQ_HEARTBEAT_TTL_S, pipe)
                slot.job.heartbeat(now(), RQ_HEARTBEAT_TTL_S, pipeline=pipe)
        pipe.execute()


def wind_down(worker: SpoolWorker, join_s: float, drain_s: float) -> None:
    """Let running generations finish within the grace, then hand back the rest."""
    deadline = time.monotonic() + worker.grace_s
    while worker.running and time.monotonic() < deadline:
        worker._slot_freed.clear()
        worker._slot_freed.wait(min(1.0, max(0.0, deadline - time.monotonic())))
    slots = [s for s in worker.running.values() if s.performing and not s.gone]
    if not slots:
        return
    log.warning("grace over: handing back %d generations", len(slots))
    for slot in slots:
        slot.gone = True
        if slot.greenlet is not None:
            slot.greenlet.kill(HandBack(), block=False)
    gevent.joinall([s.greenlet for s in slots if s.greenlet], timeout=join_s)
    worker.ctx.writer.drain(drain_s)
    outcomes = worker.settler.hand_back([s.job_id for s in slots], worker.name)
    log.warning("handed back: %s", dict(Counter(o.action for o in outcomes)))
