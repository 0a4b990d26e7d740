"""Finishing jobs: every job that ended in one tick, in one round trip.

A runner that returns hands its slot here; one greenlet sends, for all the
slots that ended meanwhile, one pipeline (one per server when Spool's keys,
the leases and RQ live apart): the leases released (one script call), the
tenants' active places given back (ZREM; the log already has its terminal
event), and RQ's end of each job (execution deleted, finished or failed
registry, result, worker counters, the worker idle when it has nothing
left). Then the slots are freed for the dispatcher.

A slot whose lease was lost or handed back (`gone`) is the settler's: it
releases neither lease nor place, and RQ only loses its execution.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import gevent
import gevent.event
import redis
from rq.job import Job, JobStatus
from rq.results import Result
from rq.utils import now, utcformat
from rq.worker import BaseWorker, WorkerStatus

from spool.keys import Keys
from spool.limits import queue_release
from worker import batchfeed
from worker.context import WorkerContext
from worker.lease import LeaseKeeper
from worker.slot import Slot, Stores, run_pipelines

log = logging.getLogger("spool.worker")

RETRY_S = 0.5  # after a failed finish round trip


class Finisher:
    """Collects ended slots and finishes them a tick at a time."""

    def __init__(self, ctx: WorkerContext, stores: Stores, keeper: LeaseKeeper,
                 worker: BaseWorker, running: Callable[[], int],
                 free: Callable[[Slot], None]) -> None:
        self.ctx = ctx
        self.keys: Keys = ctx.keys
        self.stores = stores
        self.keeper = keeper
        self.worker = worker
        self.running = running
        self.free = free
        self._pending: list[tuple[Slot, str | None]] = []
        self._wake = gevent.event.Event()
        self._busy = False

    def finish(self, slot: Slot, failure: str | None) -> None:
        """Queue an ended slot (`failure`: RQ's failure text, None on success)."""
        self._pending.append((slot, failure))
        self._wake.set()

    def idle(self) -> bool:
        """Nothing waiting or in flight."""
        return not self._pending and not self._busy

    def run(self) -> None:
        """Finish ended slots forever (spawn as a greenlet)."""
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                self._busy = True
                try:
                    self._finish(batch)
                finally:
                    self._busy = False

    def _finish(self, batch: list[tuple[Slot, str | None]]) -> None:
        try:
            self._send(batch)
        except redis.RedisError as exc:
            # Leases lapse and the settler (finding the logs ended) gives the
            # places back; RQ's own maintenance expires the executions.
            log.warning("finishing %d jobs failed (%s)", len(batch), type(exc).__name__)
            gevent.sleep(RETRY_S)
        for slot, _ in batch:
            self.free(slot)
        for slot, _ in batch:
            if slot.record and slot.record.get("batch_id") and not slot.gone:
                batchfeed.after_generation(self.ctx, slot.job_id)

    def _send(self, batch: list[tuple[Slot, str | None]]) -> None:
        pipes = self.stores.pipelines()
        mine = [slot for slot, _ in batch if slot.leased and not slot.gone]
        if mine:
            ids = [slot.job_id for slot in mine]
            self.stores.leases.queue_release(pipes["lease"], ids, self.keeper.owner)
            self.keeper.released(ids)
            for slot in mine:
                queue_release(pipes["spool"], self.keys, slot.job_id, slot.record or {})
        tally = _Tally()
        for slot, failure in batch:
            if slot.job is not None:
                self._queue_rq_end(pipes["rq"], slot, slot.job, failure, tally)
        tally.queue(pipes["rq"], self.worker.key)
        if self.running() == len(batch):  # nothing else runs: the worker is idle
            self.worker.set_current_job_id(None, pipeline=pipes["rq"])
            self.worker.set_state(WorkerStatus.IDLE, pipeline=pipes["rq"])
        replies = run_pipelines(pipes)
        if mine and any(isinstance(r, redis.exceptions.NoScriptError)
                        for r in replies[id(pipes["lease"])]):
            self.stores.leases.load_scripts()
            self.stores.leases.release_many([slot.job_id for slot in mine],
                                            self.keeper.owner)

    def _queue_rq_success(self, pipe: Any, job: Job, result_ttl: int, ended_at: datetime,
                          ids: dict[str, Any]) -> None:
        """`Job._handle_success` without rewriting the whole job hash.

        RQ saves every field of the job again (its call data, creation and
        enqueue stamps, each formatted anew): ~35 µs of Python and ~600 bytes
        to Redis per job. Since our start wrote the worker's fields, only the
        status and the end time have changed; RQ's result and finished
        registry entries are its own.
        """
        pipe.hset(job.key, mapping={"status": JobStatus.FINISHED.value,
                                    "ended_at": utcformat(ended_at)})
        Result.create(job, Result.Type.SUCCESSFUL, return_value=job._result, ttl=result_ttl,
                      worker_name=self.worker.name, pipeline=pipe, **ids)
        job.finished_job_registry.add(job, result_ttl, pipe)

    def _queue_rq_end(self, pipe: Any, slot: Slot, job: Job, failure: str | None,
                      tally: _Tally) -> None:
        """RQ's end of one job, as its own worker records it (its counters in `tally`)."""
        execution = slot.execution
        job.ended_at = ended_at = now()
        if slot.stopped and failure is None:
            failure = "Job stopped by user (rq stop-job): the generation was cancelled."
        if execution is not None:
            execution.delete(job, pipe)
        tally.working_s += (ended_at - (job.started_at or ended_at)).total_seconds()
        if slot.gone:
            return  # the settler requeued or failed the job in RQ
        ids: dict[str, Any] = {
            "execution_id": execution.id if execution else None,
            "execution_started_at": execution.created_at if execution else None,
            "execution_ended_at": ended_at}
        if failure is None:
            job._status = JobStatus.FINISHED
            result_ttl = job.get_result_ttl(self.worker.default_result_ttl)
            if result_ttl != 0:
                self._queue_rq_success(pipe, job, result_ttl, ended_at, ids)
            _expire_job(pipe, job, result_ttl)
            tally.succeeded += 1
        else:
            job.set_status(JobStatus.STOPPED if slot.stopped else JobStatus.FAILED, pipe)
            job._handle_failure(failure, pipe, worker_name=self.worker.name, **ids)
            tally.failed += 1


@dataclass
class _Tally:
    """The RQ worker's counters over one finished batch: written once per tick,
    not once per job (RQ's own worker adds them up job by job)."""

    working_s: float = 0.0
    succeeded: int = 0
    failed: int = 0

    def queue(self, pipe: Any, worker_key: str) -> None:
        """The worker hash's increments (the fields RQ's `increment_*` write)."""
        if self.working_s:
            pipe.hincrbyfloat(worker_key, "total_working_time", self.working_s)
        if self.succeeded:
            pipe.hincrby(worker_key, "successful_job_count", self.succeeded)
        if self.failed:
            pipe.hincrby(worker_key, "failed_job_count", self.failed)


def _expire_job(pipe: Any, job: Job, result_ttl: int) -> None:
    """`Job.cleanup` for a finished job without dependents.

    RQ's also sets the TTL of the job's dependents and dependencies sets;
    Spool's jobs have neither (the web enqueues them without `depends_on`,
    and the finisher enqueues no dependents), so those two keys never exist.
    """
    if result_ttl is not None and result_ttl > 0:
        pipe.expire(job.key, result_ttl)
    else:
        job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)
