"""Spool's concurrent RQ worker: up to N generations at once, one greenlet each.

RQ's workers run one job per process. This one is an RQ `BaseWorker` (so
its worker key, birth/death, command channel and `rq info` stay RQ's) that
dequeues only while a slot is free and keeps RQ's bookkeeping per job:
an Execution in the StartedJobRegistry while it runs, then the Finished or
Failed registry. Timeouts are `gevent.Timeout`s (SIGALRM cannot time out
hundreds of jobs in one process); RQ's `stop-job` command cancels the
generation. Leases, not RQ's 90 s heartbeats, find dead workers.

The job path is per tick, not per job: the jobs popped in one round trip
are claimed in one more (`worker.claim`: leases, records, RQ's start), and
the jobs that ended meanwhile are finished in one (`worker.finish`: leases
and active places released, RQ's end). This module is the loop around
them: dequeue, run, heartbeats, commands, shutdown.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
import traceback

import gevent
import gevent.event
import redis
from rq.command import parse_payload
from rq.queue import Queue
from rq.utils import now
from rq.worker import BaseWorker, WorkerStatus

from spool.connection import is_cluster
from spool.events import ERROR
from spool.keys import QUEUE_BATCH, QUEUE_INTERACTIVE
from spool.lease import Leases, Settler, lease_store, settle_forever
from spool.queue import queue_for
from worker import heartbeat, rqduties
from worker.claim import Claimer
from worker.context import WorkerContext
from worker.control import JobTimeout
from worker.dequeue import Dequeuer
from worker.finish import Finisher
from worker.lease import HandBack, LeaseKeeper, LeaseLost
from worker.runner import run_generation
from worker.slot import Slot, Stores, batch_cap, text

log = logging.getLogger("spool.worker")

IDLE_BLOCK_S = 0.25  # BLMOVE wait on the interactive queue when both are empty
DEQUEUE_BATCH = 50  # LMOVEs per round trip while slots are free
RQ_HEARTBEAT_INTERVAL_S = 10.0  # worker/execution/job heartbeats in RQ's keys
REDIS_RETRY_S = 1.0
# Heroku kills 30 s after SIGTERM; the default grace (25 s) leaves these.
HANDBACK_JOIN_S = 2.0  # for runners to unwind after HandBack
DRAIN_S = 2.0  # for their last appends to reach Redis

__all__ = ["SpoolWorker", "batch_cap"]


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
        self._queues_empty = False  # seen empty by the last claim: block at once
        self.batch_running = 0
        self.stopping = False
        self._slot_freed = gevent.event.Event()
        lease_redis = lease_store(ctx.redis, ctx.settings.rq_redis_url)
        self.leases = Leases(lease_redis, ctx.keys)
        self.settler = Settler(ctx.log, rq_client, ctx.settings.job_timeout_s, lease_redis)
        self.keeper = LeaseKeeper(self.leases, self.name, self._leased, self._lease_lost)
        shared = (not is_cluster(ctx.redis)
                  and ctx.settings.rq_redis_url == ctx.settings.redis_url)
        self.stores = Stores(ctx.redis, rq_client, self.leases, shared)
        self.claimer = Claimer(self.stores, ctx.log, self.keeper, self)
        self.dequeuer = Dequeuer(rq_client, *queues)
        self.finisher = Finisher(ctx, self.stores, self.keeper, self,
                                 lambda: len(self.running), self._free)

    # -- the work loop ---------------------------------------------------------
    def work(self, burst: bool = False, **_: object) -> bool:  # type: ignore[override]
        """Serve the queues until SIGTERM (or, with `burst`, until they are empty)."""
        self.bootstrap()
        self.set_state(WorkerStatus.IDLE)
        self._install_signal_handlers()
        self.leases.load_scripts()
        self.claimer.load_scripts()
        self.ctx.writer.output_guard = self.keeper.guard
        self.ctx.writer.start()
        self.ctx.watcher.start()
        helpers = [gevent.spawn(self.keeper.run), gevent.spawn(settle_forever, self.settler),
                   gevent.spawn(self._heartbeat_forever), heartbeat.start(self.ctx),
                   gevent.spawn(self.finisher.run)]
        started = 0
        try:
            started = self._dispatch(burst)
            self._wind_down()
            deadline = time.monotonic() + DRAIN_S
            while not self.finisher.idle() and time.monotonic() < deadline:
                gevent.sleep(0.01)  # the last finishes reach Redis before the worker goes
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
                self._start(found)
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
        interactive = self.queues[0]
        if block and self._queues_empty:
            self._queues_empty = False  # the last claim saw nothing left: wait for work
            return self._block(interactive)
        found = self.dequeuer.pop(min(free, DEQUEUE_BATCH), self.batch_slots - self.batch_running)
        if found or not block:
            return found
        return self._block(interactive)

    def _block(self, interactive: Queue) -> list[tuple[str, Queue]]:
        """Wait (briefly) for an interactive job."""
        job_id = self.connection.blmove(interactive.key, interactive.intermediate_queue_key,
                                        IDLE_BLOCK_S)  # type: ignore[arg-type]
        return [] if job_id is None else [(text(job_id), interactive)]

    def _open_slot(self, job_id: str, queue: Queue) -> Slot:
        slot = Slot(job_id, queue, batch=queue is self.queues[1])
        self.running[job_id] = slot
        self.batch_running += slot.batch
        return slot

    def _start(self, found: list[tuple[str, Queue]]) -> None:
        """Claim the jobs of one tick in one round trip (see worker.claim), then run each."""
        became_busy = not self.running
        slots = [self._open_slot(job_id, queue) for job_id, queue in found]
        try:
            self._queues_empty = self.claimer.claim(slots, became_busy,
                                                    [q.key for q in self.queues])
        except redis.RedisError as exc:
            # Leased ones are settled (requeued) when their leases lapse; unleased
            # ones still in RQ's intermediate list are requeued by the orphan sweep.
            log.warning("claiming %d jobs failed (%s)", len(slots), type(exc).__name__)
            for slot in slots:
                slot.gone = True
        dropped = []
        for slot in slots:
            if slot.job is not None and slot.execution is not None:
                slot.greenlet = gevent.spawn(self._run_slot, slot)
            else:
                dropped.append(slot)
        if dropped:
            mine = [slot.job_id for slot in dropped if slot.leased and not slot.gone]
            with contextlib.suppress(redis.RedisError):
                if mine:
                    self.leases.release_many(mine, self.name)
            for slot in dropped:
                self._free(slot)

    # -- one job ---------------------------------------------------------------
    def _run_slot(self, slot: Slot) -> None:
        failure = None
        try:
            slot.performing = True
            failure = self._perform(slot)
        except Exception:
            log.exception("running job %s failed", slot.job_id)
        finally:
            slot.performing = False
            self.finisher.finish(slot, failure)

    def _perform(self, slot: Slot) -> str | None:
        """Run the job's generation; None on success, else the failure text for RQ.

        The job is always `worker.jobs.run_generation(gen_id)` (the web
        enqueues nothing else); it is called directly, with the record the
        claim loaded, instead of through RQ's `Job.perform`.
        """
        job = slot.job
        assert job is not None
        timeout = job.timeout if job.timeout and job.timeout > 0 else Queue.DEFAULT_TIMEOUT
        try:
            with gevent.Timeout(timeout, JobTimeout(timeout)):
                run_generation(self.ctx, slot.job_id, slot.record, slot.started_ms)
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

    def _free(self, slot: Slot) -> None:
        if self.running.pop(slot.job_id, None) is slot:
            self.batch_running -= slot.batch
        self._slot_freed.set()

    # -- leases, heartbeats, commands --------------------------------------------
    def _leased(self) -> list[str]:
        return [gen_id for gen_id, slot in self.running.items() if slot.leased and not slot.gone]

    def _lease_lost(self, gen_id: str) -> None:
        slot = self.running.get(gen_id)
        if slot is not None and slot.greenlet is not None and not slot.gone:
            slot.gone = True
            slot.greenlet.kill(LeaseLost(gen_id), block=False)

    def _heartbeat_forever(self) -> None:
        rqduties.heartbeat_forever(self, RQ_HEARTBEAT_INTERVAL_S)

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
        rqduties.wind_down(self, HANDBACK_JOIN_S, DRAIN_S)
