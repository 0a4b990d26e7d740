"""The queue contract between web and worker.

The web enqueues by dotted path (it never imports `worker`); the RQ job id
is the generation id, so RQ's registries and `rq info` name generations.
"""

from __future__ import annotations

from typing import Any

import redis
from rq import Queue

from spool.keys import PRIORITIES, Keys

JOB_FUNC = "worker.jobs.run_generation"
RESULT_TTL_S = 3600
FAILURE_TTL_S = 86400


def queue_for(rq_client: redis.Redis, keys: Keys, priority: str) -> Queue:
    """The RQ queue serving `priority` ("interactive" or "batch").

    One Queue object per client and name: RQ caches the server version on
    it, which a fresh Queue would ask Redis for (INFO) on every enqueue.
    """
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}")
    cache: dict[str, Queue] | None = getattr(rq_client, "_spool_queues", None)
    if cache is None:
        cache = {}
        setattr(rq_client, "_spool_queues", cache)  # noqa: B010 - a private cache slot
    name = keys.queue_name(priority)
    queue = cache.get(name)
    if queue is None:
        queue = cache[name] = Queue(name, connection=rq_client)
    return queue


def enqueue_generation(
    rq_client: redis.Redis,
    keys: Keys,
    gen_id: str,
    priority: str,
    job_timeout_s: int,
    *,
    at_front: bool = False,
    pipeline: Any = None,
) -> None:
    """Put generation `gen_id` on its priority's queue (job id = generation id).

    With `pipeline` (of `rq_client`), the commands are only queued on it.
    """
    queue_for(rq_client, keys, priority).enqueue_call(
        JOB_FUNC,
        args=(gen_id,),
        job_id=gen_id,
        timeout=job_timeout_s,
        result_ttl=RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S,
        description=f"generation {gen_id}",
        at_front=at_front,
        pipeline=pipeline,
    )
