"""Worker liveness for `/readyz`: a timestamp per worker in one sorted set."""

from __future__ import annotations

import contextlib
import logging
import time

import gevent
import redis

from worker.context import WorkerContext

log = logging.getLogger("spool.heartbeat")

HEARTBEAT_INTERVAL_S = 5.0


def beat_forever(ctx: WorkerContext) -> None:
    """Refresh this worker's entry and prune dead ones, every few seconds."""
    key = ctx.keys.workers()
    while True:
        try:
            now = time.time()
            pipe = ctx.redis.pipeline(transaction=False)
            pipe.zadd(key, {ctx.worker_id: now})
            pipe.zremrangebyscore(key, "-inf", now - 3600)
            pipe.expire(key, 3600)  # every key has a TTL: gone an hour after the last worker
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("heartbeat failed: %s", type(exc).__name__)
        gevent.sleep(HEARTBEAT_INTERVAL_S)


def start(ctx: WorkerContext) -> gevent.Greenlet:
    """Spawn the heartbeat greenlet."""
    return gevent.spawn(beat_forever, ctx)


def remove(ctx: WorkerContext) -> None:
    """Forget this worker (clean shutdown)."""
    with contextlib.suppress(redis.RedisError):
        ctx.redis.zrem(ctx.keys.workers(), ctx.worker_id)
