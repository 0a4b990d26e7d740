"""Spool's concurrent RQ worker: up to N generations at once, one greenlet each.

RQ's workers run one job per process. This one is an RQ `BaseWorker` (so
its worker key, birth/death, command channel and `rq info` stay RQ's) that
dequeues only while a slot is free and keeps RQ's bookkeeping per job:
an Execution in the StartedJobRegistry while it runs, then the Finished or
Failed registry. Timeouts are `gevent.Timeout`s (SIGALRM cannot time out
hundreds of jobs in one process); RQ's `stop-job` command cancels the
generation. Leases, not RQ's 90 s heartbeats, find dead workers.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
import traceback
from collections import Counter
from dataclasses import dataclass

import gevent
import gevent.event
import redis
from rq.command import parse_payload
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.utils import now
from rq.worker import BaseWorker, WorkerStatus

from spool.events import ERROR
from spool.keys import QUEUE_BATCH, QUEUE_INTERACTIVE
from spool.lease import Leases, Settler, lease_store, settle_forever
from spool.queue import queue_for
from worker import heartbeat
from worker.context import WorkerContext
from worker.control import JobTimeout
from worker.lease import HandBack, LeaseKeeper, LeaseLost

log = logging.getLogger("spool.worker")

IDLE_BLOCK_S = 0.25  # BLMOVE wait on the interactive queue when both are empty
DEQUEUE_BATCH = 50  # LMOVEs per round trip while slots are free
RQ_HEARTBEAT_INTERVAL_S = 10.0  # worker/execution/job heartbeats in RQ's keys
RQ_HEARTBEAT_TTL_S = 90  # RQ entries outlive a missed heartbeat or two
REDIS_RETRY_S = 1.0
# Heroku kills 30 s after SIGTERM; the default grace (25 s) leaves these.
HANDBACK_JOIN_S = 2.0  # for runners to unwind after HandBack
DRAIN_S = 2.0  # for their last appends to reach Redis


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(eq=False)
class Slot:
    """One in-flight job (`job` is fetched by its own greenlet)."""

    job_id: str
    queue: Queue
    batch: bool
    job: Job | None = None
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


class SpoolWorker(BaseWorker):
    """A gevent worker running up to `slots` generations concurrently."""

    def __init__(self, ctx: WorkerContext, rq_client: redis.Redis, slots: int) -> None:
        queues = [queue_for(rq_client, ctx.keys, p) for p in (QUEUE_INTERACTIVE, QUEUE_BATCH)]
        super().__init__(queues, name=ctx.worker_id, connection=rq_client)
        self.ctx = ctx
        self.slots = slots
        self.batch_slots = batch_cap(slots, ctx.settings.batch_share)
        self.grace_s = ctx.settings.shutdown_grace_s
        self.running: dict[str, Slot] = {}
        self.batch_running = 0
        self.stopping = False
        self._slot_freed = gevent.event.Event()
        lease_redis = lease_store(ctx.redis, ctx.settings.rq_redis_url)
        self.leases = Leases(lease_redis, ctx.keys)
        self.settler = Settler(ctx.log, rq_client, ctx.settings.job_timeout_s, lease_redis)
        self.keeper = LeaseKeeper(self.leases, self.name, self._leased, self._lease_lost)

    # -- the work loop ---------------------------------------------------------
    def work(self, burst: bool = False, **_: object) -> bool:  # type: ignore[override]
        """Serve the queues until SIGTERM (or, with `burst`, until they are empty)."""
        self.bootstrap()
        self.set_state(WorkerStatus.IDLE)
        self._install_signal_handlers()
        self.ctx.writer.output_guard = self.keeper.guard
        self.ctx.writer.start()
        self.ctx.watcher.start()
        helpers = [gevent.spawn(self.keeper.run), gevent.spawn(settle_forever, self.settler),
                   gevent.spawn(self._heartbeat_forever), heartbeat.start(self.ctx)]
        started = 0
        try:
            started = self._dispatch(burst)
            self._wind_down()
        finally:
            gevent.killall(helpers, block=False)
            heartbeat.remove(self.ctx)
            self.teardown()
        return started > 0

    def _dispatch(self, burst: bool) -> int:
        started = 0
        while not self.stopping:
            free = self.slots - len(self.running)
            if free <= 0:
                self._slot_freed.clear()
                self._slot_freed.wait(1.0)
                continue
            try:
                found = self._dequeue(free, block=not burst)
            except redis.RedisError as exc:
                # Any Redis reply, not only a lost connection: an LMOVE into a
                # full (OOM), read-only (failover) or MISCONF Redis fails too,
                # and a worker must never die of it; it takes work again as
                # soon as Redis accepts writes.
                log.warning("dequeue failed (%s: %s); retrying", type(exc).__name__,
                            str(exc)[:80])
                gevent.sleep(REDIS_RETRY_S)
                continue
            if found:
                self._start([self._open_slot(job_id, queue) for job_id, queue in found])
            started += len(found)
            if not found and burst:
                if not self.running:
                    break
                self._slot_freed.clear()
                self._slot_freed.wait(IDLE_BLOCK_S)
        return started

    def _dequeue(self, free: int, block: bool) -> list[tuple[str, Queue]]:
        """Up to `free` job ids: interactive first; batch only below its share.

        Each pop is an LMOVE into RQ's intermediate list (so a crash right
        after it is recoverable); up to DEQUEUE_BATCH of them share one round trip.
        """
        interactive, batch = self.queues
        found = self._pop(interactive, min(free, DEQUEUE_BATCH))
        batch_free = min(free - len(found), self.batch_slots - self.batch_running)
        if batch_free > 0 and len(found) < DEQUEUE_BATCH:
            found += self._pop(batch, min(batch_free, DEQUEUE_BATCH - len(found)))
        if found or not block:
            return found
        job_id = self.connection.blmove(interactive.key, interactive.intermediate_queue_key,
                                        IDLE_BLOCK_S)  # type: ignore[arg-type]
        return [] if job_id is None else [(_text(job_id), interactive)]

    def _pop(self, queue: Queue, count: int) -> list[tuple[str, Queue]]:
        with self.connection.pipeline(transaction=False) as pipe:
            for _ in range(count):
                pipe.lmove(queue.key, queue.intermediate_queue_key)
            popped = pipe.execute()
        return [(_text(job_id), queue) for job_id in popped if job_id is not None]

    def _open_slot(self, job_id: str, queue: Queue) -> Slot:
        slot = Slot(job_id, queue, batch=queue is self.queues[1])
        self.running[job_id] = slot
        self.batch_running += slot.batch
        if len(self.running) == 1:
            self.set_state(WorkerStatus.BUSY)
        return slot

    def _start(self, slots: list[Slot]) -> None:
        """Claim a batch of popped jobs in three round trips, then run each."""
        try:
            self._claim(slots)
        except redis.RedisError as exc:
            # Leased ones are settled (requeued) when their leases lapse; unleased
            # ones still in RQ's intermediate list are requeued by the orphan sweep.
            log.warning("claiming %d jobs failed (%s)", len(slots), type(exc).__name__)
            for slot in slots:
                slot.gone = slot.leased
        for slot in slots:
            if slot.job is not None and slot.execution is not None:
                slot.greenlet = gevent.spawn(self._run_slot, slot, slot.job)
            else:
                if slot.leased and not slot.gone:
                    with contextlib.suppress(redis.RedisError):
                        self.keeper.release(slot.job_id)
                self._free(slot)

    # -- one job ---------------------------------------------------------------
    def _run_slot(self, slot: Slot, job: Job) -> None:
        try:
            slot.performing = True
            failure = self._perform(slot, job)
            slot.performing = False
            self._record_outcome(slot, job, failure)
        except redis.RedisError as exc:
            # Redis refusing writes (OOM, READONLY...) is not a bug: the log has
            # its end (or the writer/settler gives it one); RQ's registry
            # cleanup retires the job's entry later.
            log.warning("RQ bookkeeping for job %s skipped: %s", slot.job_id,
                        type(exc).__name__)
        except Exception:
            log.exception("bookkeeping for job %s failed", slot.job_id)
        finally:
            if slot.leased and not slot.gone:
                # On a Redis error the lease lapses; the settler then finds the log ended.
                with contextlib.suppress(redis.RedisError):
                    self.keeper.release(slot.job_id)
            self._free(slot)

    def _claim(self, slots: list[Slot]) -> None:
        """Lease the generations, take the jobs out of RQ's intermediate list, start them.

        A job another process already took out of the intermediate list (the
        orphan sweep) or that no longer exists is left without `job`.
        """
        self.keeper.acquire([slot.job_id for slot in slots])
        for slot in slots:
            slot.leased = True
        jobs = [Job(slot.job_id, connection=self.connection, serializer=self.serializer)
                for slot in slots]
        with self.connection.pipeline(transaction=False) as pipe:
            for slot, job in zip(slots, jobs, strict=True):
                pipe.lrem(slot.queue.intermediate_queue_key, 1, slot.job_id)
                pipe.hgetall(job.key)
            replies = pipe.execute()
        claimed = []
        for index, (slot, job) in enumerate(zip(slots, jobs, strict=True)):
            removed, raw = replies[2 * index], replies[2 * index + 1]
            if not removed:
                log.warning("job %s was requeued as an orphan; dropping this copy", job.id)
            elif not raw:
                log.warning("job %s no longer exists; skipping it", job.id)
            else:
                job.restore(raw)
                slot.job = job
                claimed.append(slot)
        if not claimed:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            executions = [Execution.create(slot.job, RQ_HEARTBEAT_TTL_S, pipeline=pipe,
                                           worker_name=self.name) for slot in claimed if slot.job]
            for slot in claimed:
                if slot.job is not None:
                    slot.job.prepare_for_execution(self.name, pipeline=pipe)
            self.set_current_job_id(claimed[-1].job_id, pipeline=pipe)
            pipe.execute()
        for slot, execution in zip(claimed, executions, strict=True):
            slot.execution = execution

    def _perform(self, slot: Slot, job: Job) -> str | None:
        """Run the job; None on success, else the failure text for RQ."""
        timeout = job.timeout if job.timeout and job.timeout > 0 else Queue.DEFAULT_TIMEOUT
        try:
            with gevent.Timeout(timeout, JobTimeout(timeout)):
                job.perform()
            return None
        except (LeaseLost, HandBack):
            slot.gone = True  # whoever took the lease settles the generation and its job
            return None
        except JobTimeout as exc:
            self._ensure_ended(job.id, "timeout", str(exc))
            return f"JobTimeoutException: {exc}"
        except BaseException as exc:  # a job must never take the worker down
            self._ensure_ended(job.id, "provider_error", "internal error while generating")
            if not isinstance(exc, Exception):
                log.warning("job %s interrupted by %s", job.id, type(exc).__name__)
            return "".join(traceback.format_exception(exc))

    def _ensure_ended(self, gen_id: str, error_type: str, message: str) -> None:
        """Backstop: end the log if the runner could not (a no-op when it did)."""
        self.ctx.writer.emit(gen_id, ERROR, {"type": error_type, "message": message,
                                             "retryable": True},
                             {"status": "failed", "finish_reason": "error",
                              "error": {"type": error_type, "message": message}}, wait=True)
        self.ctx.writer.forget(gen_id)

    def _record_outcome(self, slot: Slot, job: Job, failure: str | None) -> None:
        execution = slot.execution
        job.ended_at = now()
        if slot.stopped and failure is None:
            failure = "Job stopped by user (rq stop-job): the generation was cancelled."
        with self.connection.pipeline() as pipe:
            if execution is not None:
                execution.delete(job, pipe)
            self.increment_total_working_time(job.ended_at - (job.started_at or job.ended_at), pipe)
            if slot.gone:
                pass  # the settler requeued or failed the job in RQ
            elif failure is None:
                job._status = JobStatus.FINISHED
                result_ttl = job.get_result_ttl(self.default_result_ttl)
                if result_ttl != 0:
                    job._handle_success(result_ttl, pipeline=pipe, worker_name=self.name,
                                        execution_id=execution.id if execution else None,
                                        execution_started_at=execution.created_at if execution
                                        else None, execution_ended_at=job.ended_at)
                job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)
                self.increment_successful_job_count(pipe)
            else:
                job.set_status(JobStatus.STOPPED if slot.stopped else JobStatus.FAILED, pipe)
                job._handle_failure(failure, pipe, worker_name=self.name,
                                    execution_id=execution.id if execution else None,
                                    execution_started_at=execution.created_at if execution
                                    else None, execution_ended_at=job.ended_at)
                self.increment_failed_job_count(pipe)
            pipe.execute()

    def _free(self, slot: Slot) -> None:
        if self.running.pop(slot.job_id, None) is slot:
            self.batch_running -= slot.batch
        self._slot_freed.set()
        if not self.running:
            with contextlib.suppress(redis.RedisError), self.connection.pipeline() as pipe:
                self.set_current_job_id(None, pipeline=pipe)
                self.set_state(WorkerStatus.IDLE, pipeline=pipe)
                pipe.execute()

    # -- leases, heartbeats, commands --------------------------------------------
    def _leased(self) -> list[str]:
        return [gen_id for gen_id, slot in self.running.items() if slot.leased and not slot.gone]

    def _lease_lost(self, gen_id: str) -> None:
        slot = self.running.get(gen_id)
        if slot is not None and slot.greenlet is not None and not slot.gone:
            slot.gone = True
            slot.greenlet.kill(LeaseLost(gen_id), block=False)

    def _heartbeat_forever(self) -> None:
        while True:
            gevent.sleep(RQ_HEARTBEAT_INTERVAL_S)
            try:
                self._rq_heartbeat()
                if self.should_run_maintenance_tasks:
                    self.clean_registries()
            except redis.RedisError as exc:
                log.warning("RQ heartbeat failed: %s", type(exc).__name__)

    def _rq_heartbeat(self) -> None:
        """Worker, executions and jobs in one pipeline (RQ's own do one job)."""
        with self.connection.pipeline() as pipe:
            self.heartbeat(pipeline=pipe)
            for slot in list(self.running.values()):
                if slot.execution is not None and slot.job is not None and not slot.gone:
                    registry = slot.queue.started_job_registry
                    slot.execution.heartbeat(registry, RQ_HEARTBEAT_TTL_S, pipe)
                    slot.job.heartbeat(now(), RQ_HEARTBEAT_TTL_S, pipeline=pipe)
            pipe.execute()

    def handle_payload(self, message: dict[str, object]) -> None:
        """RQ commands: `stop-job` cancels that generation; the rest as RQ does."""
        payload = parse_payload(message)
        job_id = payload.get("job_id")
        if payload.get("command") != "stop-job":
            super().handle_payload(message)
        elif isinstance(job_id, str) and job_id in self.running:
            log.info("stop-job %s: cancelling the generation", job_id)
            self.running[job_id].stopped = True
            self.ctx.redis.hsetnx(self.ctx.keys.record(job_id), "cancel", "user")
            handle = self.ctx.watcher.handles.get(job_id)
            if handle is not None:
                handle.cancel("user")

    # -- shutdown ----------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        if self.stopping:
            log.info("signal %s again: already stopping", signal.Signals(signum).name)
            return
        log.info("signal %s: no new work; %d running get %.0f s to finish",
                 signal.Signals(signum).name, len(self.running), self.grace_s)
        self.stopping = True
        self._shutdown_requested_date = now()

    def _wind_down(self) -> None:
        """Let running generations finish within the grace, then hand back the rest."""
        deadline = time.monotonic() + self.grace_s
        while self.running and time.monotonic() < deadline:
            self._slot_freed.clear()
            self._slot_freed.wait(min(1.0, max(0.0, deadline - time.monotonic())))
        slots = [s for s in self.running.values() if s.performing and not s.gone]
        if not slots:
            return
        log.warning("grace over: handing back %d generations", len(slots))
        for slot in slots:
            slot.gone = True
            if slot.greenlet is not None:
                slot.greenlet.kill(HandBack(), block=False)
        gevent.joinall([s.greenlet for s in slots if s.greenlet], timeout=HANDBACK_JOIN_S)
        self.ctx.writer.drain(DRAIN_S)
        outcomes = self.settler.hand_back([s.job_id for s in slots], self.name)
        log.warning("handed back: %s", dict(Counter(o.action for o in outcomes)))
