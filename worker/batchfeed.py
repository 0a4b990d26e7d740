"""Feeding batch rows to the RQ batch queue, fairly and shallowly.

Rows wait in per-batch `pending` lists in Redis. The feeder keeps the RQ
batch queue only a few rows deep and fills it round robin across active
batches (rotating one shared list), so a 10,000-row batch submitted first
cannot starve one submitted a minute later by another tenant: each gets
every other free slot. Every worker process runs the loop; a short Redis
lock lets one of them feed at a time. The queue is deep enough for the rows
that end within one tick, so a freed slot finds a row waiting.

The sweeper is the safety net behind the row-end hooks: once a second it
accounts dispatched rows whose generations ended without being counted
(e.g. settled by another process), and re-enqueues a dispatched row that
never reached RQ (a crash between taking it and enqueueing it).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable

import gevent
import redis
from rq.job import Job

from spool.batches import BatchStore, account_row_end, counter_for, on_generation_end
from spool.clock import now_ms
from spool.connection import connect_rq
from spool.keys import QUEUE_BATCH
from spool.limits import ACTIVE_FIELD, queue_release
from spool.queue import enqueue_generation, queue_for
from worker.context import WorkerContext

log = logging.getLogger("spool.batchfeed")

# Rows kept waiting on the RQ batch queue: starts shallow, doubles while the
# workers drain it within a tick (many slots, short rows), halves when they don't.
MIN_QUEUE_DEPTH = 16
MAX_QUEUE_DEPTH = 512
FEED_INTERVAL_S = 0.05
# With no batch open the feeder looks less often: each look is a round trip,
# and an idle worker should not spend 20 a second on nothing. A new batch
# starts feeding within this.
IDLE_FEED_INTERVAL_S = 0.5
SWEEP_INTERVAL_S = 1.0
LOCK_TTL_S = 2.0  # a feeder that dies holds the lock at most this long
REDISPATCH_AFTER_MS = 30_000  # a dispatched row still queued and absent from RQ this long


class Feeder:
    """Feeds and sweeps batches for one worker process."""

    def __init__(self, ctx: WorkerContext, rq_client: redis.Redis) -> None:
        self.ctx = ctx
        self.keys = ctx.keys
        self.client = ctx.redis
        self.rq_client = rq_client
        self.store = BatchStore(ctx.redis, ctx.keys, ctx.log.retention)
        self.queue = queue_for(rq_client, ctx.keys, QUEUE_BATCH)
        self.owner = secrets.token_hex(8)
        self.depth = MIN_QUEUE_DEPTH
        self._filled = False  # the last feed filled the queue to its depth
        self._greenlets: list[gevent.Greenlet] = []

    def start(self) -> None:
        """Start the feed and sweep loops (idempotent)."""
        if not self._greenlets:
            self._greenlets = [
                gevent.spawn(self._loop, self.feed, FEED_INTERVAL_S, IDLE_FEED_INTERVAL_S),
                gevent.spawn(self._loop, self.sweep, SWEEP_INTERVAL_S, SWEEP_INTERVAL_S)]

    def _loop(self, step: Callable[[], object], interval: float, idle: float) -> None:
        """Run `step` every `interval`, or every `idle` while it finds nothing to do (None)."""
        while True:
            result: object = 0
            try:
                result = step()
            except redis.RedisError as exc:
                log.warning("batch %s failed: %s", getattr(step, "__name__", "step"),
                            type(exc).__name__)
            gevent.sleep(idle if result is None else interval)

    def _locked(self, key: str) -> redis.lock.Lock | None:
        lock = self.client.lock(key, timeout=LOCK_TTL_S, blocking=False)
        return lock if lock.acquire(token=self.owner) else None

    @staticmethod
    def _release(lock: redis.lock.Lock) -> None:
        # It may have expired meanwhile (someone else may hold it now).
        with contextlib.suppress(redis.exceptions.LockError):
            lock.release()

    def feed(self) -> int | None:
        """Top the RQ batch queue up to its depth, round robin; returns rows fed
        (None: no batch has rows to feed)."""
        if not self.client.llen(self.keys.batches_active()):
            return None
        lock = self._locked(self.keys.batch_feed_lock())
        if lock is None:
            return 0
        try:
            waiting = self.queue.count
            self._adapt_depth(waiting)
            room = self.depth - waiting
            fed = self._feed_rows(room)
            self._filled = room > 0 and fed == room
            return fed
        finally:
            self._release(lock)

    def _adapt_depth(self, waiting: int) -> None:
        if waiting == 0 and self._filled:
            self.depth = min(self.depth * 2, MAX_QUEUE_DEPTH)
        elif waiting > self.depth // 2:
            self.depth = max(self.depth // 2, MIN_QUEUE_DEPTH)

    def _feed_rows(self, room: int) -> int:
        fed = 0
        active = self.keys.batches_active()
        while room > 0:
            batch_id = self.client.lmove(active, active, "LEFT", "RIGHT")
            if batch_id is None:
                break
            gen_id = self.store.take_row(str(batch_id))
            if gen_id is None:
                self.store.retire(str(batch_id))  # the list shrinks, so this loop ends
                continue
            self._enqueue(gen_id)
            room -= 1
            fed += 1
        return fed

    def _enqueue(self, gen_id: str) -> None:
        enqueue_generation(self.rq_client, self.keys, gen_id, QUEUE_BATCH,
                           self.ctx.settings.job_timeout_s)

    def sweep(self) -> None:
        """Account ended-but-uncounted rows; re-enqueue rows lost before reaching RQ."""
        lock = self._locked(self.keys.batch_sweep_lock())
        if lock is None:
            return
        try:
            open_ids = [str(b) for b in self.client.smembers(self.keys.batches_open())]
            for batch_id in open_ids:
                self._sweep_batch(batch_id)
            if open_ids:  # the indexes live while batches do (every key has a TTL)
                ttl = self.store.retention.live_s
                self.client.expire(self.keys.batches_open(), ttl)
                self.client.expire(self.keys.batches_active(), ttl)
        finally:
            self._release(lock)

    def _sweep_batch(self, batch_id: str) -> None:
        record = self.store.load(batch_id)
        if record is None or "ended" in record:
            self.client.srem(self.keys.batches_open(), batch_id)
            return
        if (self.client.llen(self.keys.batch_pending(batch_id))
                and self.client.lpos(self.keys.batches_active(), batch_id) is None
                and "cancel" not in record):
            self.client.rpush(self.keys.batches_active(), batch_id)  # lost its place: feed it
        rows = self.store.dispatched(batch_id)
        if not rows:
            return
        pipe = self.client.pipeline(transaction=False)
        for gen_id, _ in rows:
            pipe.hmget(self.keys.record(gen_id), ["status", "ended"])
        now = now_ms()
        for (gen_id, since), (status, ended) in zip(rows, pipe.execute(), strict=True):
            if status is None or ended is not None:
                account_row_end(self.client, self.keys, batch_id, gen_id, counter_for(status))
            elif (status == "queued" and now - since > REDISPATCH_AFTER_MS
                  and not Job.exists(gen_id, connection=self.rq_client)):
                log.warning("batch %s: row %s never reached RQ; enqueueing", batch_id, gen_id)
                self._enqueue(gen_id)
                self.store.redispatched(batch_id, gen_id)


_feeder: Feeder | None = None


def get_feeder(ctx: WorkerContext) -> Feeder:
    """This process's feeder (built on first use)."""
    global _feeder
    if _feeder is None:
        _feeder = Feeder(ctx, connect_rq(ctx.settings.rq_redis_url))
    return _feeder


def start(ctx: WorkerContext) -> Feeder:
    """Start this process's feed and sweep loops (the worker entrypoint calls it)."""
    feeder = get_feeder(ctx)
    feeder.start()
    return feeder


def after_generation(ctx: WorkerContext, gen_id: str) -> None:
    """After a job: give an ended generation's active place back, and count a
    batch row's end at once (the feed loop refills the queue).

    Never raises: if Redis is unreachable the sweeper accounts the row later.
    """
    try:
        # Only these fields: a record also holds the whole prompt.
        fields = ("batch_id", "status", "ended", "tenant", ACTIVE_FIELD)
        values = ctx.redis.hmget(ctx.keys.record(gen_id), fields)
        record = {name: str(value) for name, value in zip(fields, values, strict=True)
                  if value is not None}
        if "ended" in record:
            queue_release(ctx.redis, ctx.keys, gen_id, record)
        if not record.get("batch_id"):
            return
        on_generation_end(ctx.redis, ctx.keys, gen_id, record)
    except redis.RedisError as exc:
        log.warning("batch row %s: end not accounted yet (%s)", gen_id, type(exc).__name__)
