"""Per-credential request rates and per-tenant active generations, kept in Redis.

Both limits live in Redis so they hold across any number of web processes.

The active count is a sorted set per tenant (`keys.active`): admission adds
a generation atomically with its check (`spool.admission`), and whoever
writes a generation's terminal event removes it (the worker when it
finishes a job, the web when it cancels a queued one, the lease settler when
a worker died). ZREM is idempotent, so the several parties that may end or
settle one generation can all release it. Its size (ZCARD, O(1)) is the
count: admission never looks at the generations themselves.

`prune_active` is the repair behind those releases: a place whose
generation ended or expired without being released (keys deleted by hand,
a web process that died between reserving and writing the record on a
Cluster) is found by looking at the records. It runs only when a tenant is
refused for its active limit, at most once per `REPAIR_INTERVAL_MS`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from spool.keys import Keys

RATE_WINDOW_S = 60
# A window's counter outlives the window a little, so a slow clock cannot
# resurrect it; it is never read once its window has passed.
RATE_KEY_SLACK_S = 5
# What a client over the active limit is told to wait: generations end on
# their own, so a short pause is the honest hint.
ACTIVE_RETRY_AFTER_S = 2
# A reservation is made just before its record is written; a reservation
# without a record is only dropped once it is older than this.
RESERVATION_GRACE_MS = 60_000
# A refused tenant's set is checked for leaked places at most this often.
REPAIR_INTERVAL_MS = 1_000
# The record field that says a generation holds one of its tenant's places.
ACTIVE_FIELD = "active"

# KEYS: active; ARGV: gen, limit, ttl s, now ms. 1 when reserved, else -count.
_RESERVE = """
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then return -n end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return n + 1
"""


@dataclass(frozen=True)
class Verdict:
    """The outcome of a limit check: allowed, or retry after `retry_after_s`."""

    allowed: bool
    retry_after_s: int = 0
    count: int = 0


def rate_window(now: float | None = None) -> int:
    """The fixed rate window `now` falls in."""
    return int((time.time() if now is None else now) // RATE_WINDOW_S)


def rate_refusal(count: int, now: float | None = None) -> Verdict:
    """The verdict for a request that made the window's count `count` (over the limit)."""
    now = time.time() if now is None else now
    window_end = (rate_window(now) + 1) * RATE_WINDOW_S
    return Verdict(False, retry_after_s=max(1, int(window_end - now + 0.999)), count=count)


def hit_rate(client: redis.Redis, keys: Keys, tenant: str, credential: str, limit: int,
             now: float | None = None) -> Verdict:
    """Count one request for `credential` in the current minute window.

    A fixed window: one INCR per request, one key per credential and minute.
    A refused request still counts, so hammering a limit never opens it early.
    (Creating a generation counts inside the admission script instead.)
    """
    now = time.time() if now is None else now
    key = keys.rate(tenant, credential, rate_window(now))
    pipe = client.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, RATE_WINDOW_S + RATE_KEY_SLACK_S)
    count = int(pipe.execute()[0])
    if count <= limit:
        return Verdict(True, count=count)
    return rate_refusal(count, now)


def active_refusal(count: int) -> Verdict:
    """The verdict for a tenant with `count` places taken, at its limit."""
    return Verdict(False, retry_after_s=ACTIVE_RETRY_AFTER_S, count=count)


def reserve_active(client: redis.Redis, keys: Keys, tenant: str, gen_id: str, limit: int,
                   ttl_s: int, now_ms: int) -> Verdict:
    """Add `gen_id` to the tenant's active set unless that would pass `limit`.

    One script: count and add are atomic, so racing reservations from any
    number of processes never pass the limit. (Admission does the same
    inside its own script; this is the stand-alone form.)
    """
    result = int(client.eval(_RESERVE, 1, keys.active(tenant), gen_id, limit, ttl_s, now_ms))
    if result > 0:
        return Verdict(True, count=result)
    return active_refusal(-result)


def release_active(client: Any, keys: Keys, tenant: str, gen_id: str) -> None:
    """Give `gen_id`'s place back (`client` may be a pipeline). Idempotent."""
    client.zrem(keys.active(tenant), gen_id)


def queue_release(pipe: Any, keys: Keys, gen_id: str, record: Mapping[str, Any]) -> bool:
    """Queue the release of `gen_id`'s place on `pipe` if its record says it holds one."""
    tenant = record.get("tenant")
    if not record.get(ACTIVE_FIELD) or not tenant:
        return False
    release_active(pipe, keys, str(tenant), gen_id)
    return True


def prune_active(client: redis.Redis, keys: Keys, tenant: str, now_ms: int) -> int:
    """Drop a tenant's places whose generation ended (or expired); returns how many remain.

    The repair: O(active) reads, so it runs only for a refused tenant (see
    `maybe_repair`), never on the admission path.
    """
    active_key = keys.active(tenant)
    members: list[tuple[str, float]] = client.zrange(  # type: ignore[assignment]
        active_key, 0, -1, withscores=True
    )
    if not members:
        return 0
    pipe = client.pipeline(transaction=False)
    for gen_id, _ in members:
        pipe.hmget(keys.record(gen_id), ["ended", "tenant"])
    finished = [
        gen_id
        for (gen_id, reserved_ms), (ended, owner) in zip(members, pipe.execute(), strict=True)
        if ended is not None or (owner is None and now_ms - reserved_ms > RESERVATION_GRACE_MS)
    ]
    if finished:
        client.zrem(active_key, *finished)
    return len(members) - len(finished)


def maybe_repair(client: redis.Redis, keys: Keys, tenant: str, now_ms: int) -> int:
    """Prune a refused tenant's set unless that was done within REPAIR_INTERVAL_MS.

    Returns how many places it freed (0 when it did not run).
    """
    if not client.set(keys.active_repair(tenant), "1", nx=True, px=REPAIR_INTERVAL_MS):
        return 0
    before = int(client.zcard(keys.active(tenant)))
    return max(0, before - prune_active(client, keys, tenant, now_ms))
