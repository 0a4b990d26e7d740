"""Claiming popped jobs: many per round trip.

For every job popped in one tick, one pipeline (one per server when Spool's
keys, the leases and RQ live apart) carries: the leases (one script call
for all), each generation's start (`spool.start`: its record, which the
runner would otherwise load, and its `in_progress` event), and RQ's start
of each job: out of RQ's intermediate list,
its hash, a new Execution in the StartedJobRegistry, the job marked
started, the worker busy. The lease is queued first, so a job leaves the
intermediate list (where the orphan sweep looks) only once it is leased.

A job another process took out of the intermediate list first (the orphan
sweep) or that no longer exists gets its RQ writes undone and is dropped.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.worker import BaseWorker, WorkerStatus

from spool.clock import now_ms
from spool.connection import is_cluster
from spool.events import STATUS
from spool.log import EventLog
from spool.start import START_LUA, start_command
from worker.lease import LeaseKeeper
from worker.slot import Slot, Stores, as_hash, run_pipelines, text_hash

log = logging.getLogger("spool.worker")

RQ_HEARTBEAT_TTL_S = 90  # RQ entries outlive a missed heartbeat or two


class Claimer:
    """Leases, loads and starts the jobs of one tick."""

    def __init__(self, stores: Stores, log: EventLog, keeper: LeaseKeeper,
                 worker: BaseWorker) -> None:
        self.stores = stores
        self.log = log
        self.keys = log.keys
        self.keeper = keeper
        self.worker = worker
        self._start_script = log.client.register_script(START_LUA)

    def load_scripts(self) -> None:
        """Load the start script (sent as raw EVALSHA in claim pipelines)."""
        self.stores.spool.script_load(START_LUA)

    def claim(self, slots: list[Slot], became_busy: bool, queue_keys: list[str]) -> bool:
        """Fill in `job`, `execution` and `record` of each slot it could claim.

        Returns whether the queues (`queue_keys`) were empty meanwhile: their
        lengths ride along, so an idle worker goes straight back to its
        blocking pop instead of first popping nothing.
        """
        ids = [slot.job_id for slot in slots]
        pipes = self.stores.pipelines()
        self.stores.leases.queue_acquire(pipes["lease"], ids, self.keeper.owner)
        lease_at = len(pipes["lease"]) - 1
        records_at = len(pipes["spool"])
        started = now_ms()
        cluster = is_cluster(self.stores.spool)
        for gen_id in ids:
            command = start_command(self.log, self._start_script.sha, gen_id, started,
                                    self.worker.name)
            if cluster:  # redis-py refuses EVALSHA in Cluster pipelines
                command = ("EVAL", START_LUA, *command[2:])
            pipes["spool"].execute_command(*command)
        starts = [self._queue_start(pipes["rq"], slot) for slot in slots]
        self.worker.set_current_job_id(ids[-1], pipeline=pipes["rq"])
        if became_busy:
            self.worker.set_state(WorkerStatus.BUSY, pipeline=pipes["rq"])
        lengths_at = len(pipes["rq"])
        for key in queue_keys:
            pipes["rq"].llen(key)
        sent = time.monotonic()
        replies = run_pipelines(pipes)
        self._check_lease(replies[id(pipes["lease"])][lease_at], ids)
        self.keeper.acquired(ids, sent)
        records = replies[id(pipes["spool"])][records_at:records_at + len(ids)]
        rq_replies = replies[id(pipes["rq"])]
        undo = self.stores.rq.pipeline(transaction=False)
        for slot, start, reply in zip(slots, starts, records, strict=True):
            slot.leased = True
            record, seq = self._started(slot.job_id, reply, started)
            self._settle_start(slot, start, rq_replies, record, undo)
            if slot.record is not None and seq > 0:
                slot.started_ms = started
        if len(undo):
            undo.execute()
        lengths = rq_replies[lengths_at:lengths_at + len(queue_keys)]
        return all(length == 0 for length in lengths)

    def _queue_start(self, pipe: Any, slot: Slot) -> tuple[Job, Execution, int]:
        """RQ's start of one job, queued; returns the stub job, its execution and
        where its replies begin."""
        # serializer=None is the worker's (pickle) without resolving it per job.
        job = Job(slot.job_id, connection=self.stores.rq, serializer=None)
        job.origin = slot.queue.name
        at = len(pipe)
        pipe.lrem(slot.queue.intermediate_queue_key, 1, slot.job_id)
        pipe.hgetall(job.key)
        execution = Execution.create(job, RQ_HEARTBEAT_TTL_S, pipeline=pipe,
                                     worker_name=self.worker.name)
        job.prepare_for_execution(self.worker.name, pipeline=pipe)
        return job, execution, at

    def _settle_start(self, slot: Slot, start: tuple[Job, Execution, int], replies: list[Any],
                      record: Any, undo: Any) -> None:
        job, execution, at = start
        removed, raw = replies[at], as_hash(replies[at + 1])
        if isinstance(removed, Exception) or isinstance(raw, Exception):
            raise removed if isinstance(removed, Exception) else raw
        if removed and raw:
            started = (job.worker_name, job.started_at, job.last_heartbeat)
            job.restore(raw)
            job.worker_name, job.started_at, job.last_heartbeat = started
            job._status = JobStatus.STARTED
            slot.job, slot.execution, slot.record = job, execution, text_hash(record)
            return
        log.warning("job %s %s; dropping this copy", slot.job_id,
                    "no longer exists" if not raw else "was requeued as an orphan")
        execution.delete(job, undo)
        if not raw:
            undo.delete(job.key)  # only the fields our start wrote

    def _started(self, gen_id: str, reply: Any, started: int) -> tuple[Any, int]:
        """(record as HGETALL, in_progress seq) from a start script reply."""
        if isinstance(reply, redis.exceptions.NoScriptError):
            reply = self._start_script(keys=self.log.arguments(gen_id, STATUS, {})[0],
                                       args=start_command(self.log, "", gen_id, started,
                                                          self.worker.name)[9:])
        if isinstance(reply, Exception):
            raise reply
        flat, seq = reply
        return as_hash(flat), int(seq)

    def _check_lease(self, reply: Any, ids: list[str]) -> None:
        """A NOSCRIPT (Redis lost its scripts) is redone directly; other errors raise."""
        if isinstance(reply, redis.exceptions.NoScriptError):
            self.stores.leases.load_scripts()
            self.stores.leases.acquire(ids, self.keeper.owner)
        elif isinstance(reply, Exception):
            raise reply
