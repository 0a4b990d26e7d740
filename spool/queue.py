"""The queue contract between web and worker.

The web enqueues by dotted path (it never imports `worker`); the RQ job id
is the generation id, so RQ's registries and `rq info` name generations.
"""

from __future__ import annotations

import zlib
from typing import Any

import redis
from rq import Queue

from spool.clock import utc_micro_stamp
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


_SENTINEL = "gen_" + "S" * 24  # the shape of a generation id (spool.ids)
_SENTINEL_BYTES = _SENTINEL.encode()
_STAMPED = ("created_at", "enqueued_at")  # RQ's job fields holding the enqueue time
_ZLIB = b"x\x9c"  # how RQ's zlib'd call data starts

# One queue's enqueue, recorded once: the commands, and per command the
# positions of the arguments that vary (the id, the call data, the stamps).
_Template = tuple[tuple[tuple[Any, ...], tuple[int, ...], tuple[int, ...]], ...]
_templates: dict[tuple[int, str, str, int], _Template] = {}


def _substitute(arg: Any, gen_id: str) -> Any:
    if isinstance(arg, str):
        return arg.replace(_SENTINEL, gen_id)
    if isinstance(arg, bytes):  # the call data
        return arg.replace(_SENTINEL_BYTES, gen_id.encode())
    return arg


def _uncompressed(arg: Any) -> Any:
    """RQ's call data as plain bytes, which RQ reads as such (`Job.restore` falls
    back to uncompressed data): compressing ~80 bytes again on every POST cost
    more than the bytes it saved (~2 % of a POST's CPU, py-spy)."""
    if isinstance(arg, bytes) and arg.startswith(_ZLIB):
        return zlib.decompress(arg)
    return arg


def _varies(arg: Any) -> bool:
    return (isinstance(arg, str) and _SENTINEL in arg) or (
        isinstance(arg, bytes) and _SENTINEL_BYTES in arg)


def _template(commands: tuple[tuple[Any, ...], ...]) -> _Template:
    out = []
    for recorded in commands:
        command = tuple(_uncompressed(arg) for arg in recorded)
        ids = tuple(i for i, arg in enumerate(command) if _varies(arg))
        stamps = tuple(command.index(name) + 1 for name in _STAMPED
                       if command[0] == "HSET" and name in command)
        out.append((command, ids, stamps))
    return tuple(out)


def enqueue_commands(rq_client: redis.Redis, keys: Keys, gen_id: str, priority: str,
                     job_timeout_s: int) -> tuple[tuple[Any, ...], ...]:
    """The Redis commands of RQ's own enqueue of `gen_id`, not sent.

    Building an rq Job per POST costs ~70 µs of Python; the commands differ
    between generations only by the id and the timestamps, so RQ builds them
    once per queue (for a same-length sentinel id) and each call substitutes
    just the arguments that hold them. Ids of another length take RQ's own path.
    """
    if len(gen_id) != len(_SENTINEL):
        return _recorded(rq_client, keys, gen_id, priority, job_timeout_s)
    slot = (id(rq_client), keys.queue_name(priority), priority, job_timeout_s)
    template = _templates.get(slot)
    if template is None:
        template = _templates[slot] = _template(
            _recorded(rq_client, keys, _SENTINEL, priority, job_timeout_s))
    stamp = utc_micro_stamp()
    out = []
    for command, ids, stamps in template:
        if not ids and not stamps:
            out.append(command)
            continue
        args = list(command)
        for i in ids:
            args[i] = _substitute(args[i], gen_id)
        for i in stamps:
            args[i] = stamp
        out.append(tuple(args))
    return tuple(out)


def _recorded(rq_client: redis.Redis, keys: Keys, gen_id: str, priority: str,
              job_timeout_s: int) -> tuple[tuple[Any, ...], ...]:
    recorder = rq_client.pipeline(transaction=False)
    enqueue_generation(rq_client, keys, gen_id, priority, job_timeout_s, pipeline=recorder)
    commands = tuple(tuple(args) for args, _ in recorder.command_stack)
    recorder.reset()
    return commands
