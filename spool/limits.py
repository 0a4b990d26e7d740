"""Per-key request rates and per-tenant active generations, kept in Redis.

Both limits live in Redis so they hold across any number of web processes.
Neither needs a hook in the worker: a tenant's active set is pruned on every
check by looking at the generations' records, whose `ended` field the log's
append script sets with the terminal event (and which expire with retention).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Verdict:
    """The outcome of a limit check: allowed, or retry after `retry_after_s`."""

    allowed: bool
    retry_after_s: int = 0
    count: int = 0


def hit_rate(client: redis.Redis, keys: Keys, api_key: str, limit: int,
             now: float | None = None) -> Verdict:
    """Count one request for `api_key` in the current minute window.

    A fixed window: one INCR per request, one key per key and minute. A
    refused request still counts, so hammering a limit never opens it early.
    """
    now = time.time() if now is None else now
    window = int(now // RATE_WINDOW_S)
    key = keys.rate(api_key, window)
    pipe = client.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, RATE_WINDOW_S + RATE_KEY_SLACK_S)
    count = int(pipe.execute()[0])
    if count <= limit:
        return Verdict(True, count=count)
    window_end = (window + 1) * RATE_WINDOW_S
    return Verdict(False, retry_after_s=max(1, int(window_end - now + 0.999)), count=count)


def prune_active(client: redis.Redis, keys: Keys, tenant: str, now_ms: int) -> int:
    """Drop a tenant's generations that ended (or expired); returns how many remain."""
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


def reserve_active(client: redis.Redis, keys: Keys, tenant: str, gen_id: str, limit: int,
                   ttl_s: int, now_ms: int) -> Verdict:
    """Add `gen_id` to the tenant's active set unless that would pass `limit`.

    Add first, then count: of any number of racing reservations only those
    that see themselves within the limit stay, so the limit is never passed
    (at worst, racing requests near it are all refused and retry).
    """
    prune_active(client, keys, tenant, now_ms)
    active_key = keys.active(tenant)
    pipe = client.pipeline(transaction=True)
    pipe.zadd(active_key, {gen_id: now_ms})
    pipe.zcard(active_key)
    pipe.expire(active_key, ttl_s)
    _, count, _ = pipe.execute()
    if int(count) <= limit:
        return Verdict(True, count=int(count))
    client.zrem(active_key, gen_id)
    return Verdict(False, retry_after_s=ACTIVE_RETRY_AFTER_S, count=int(count) - 1)


def release_active(client: redis.Redis, keys: Keys, tenant: str, gen_id: str) -> None:
    """Give a reservation back (the generation was never created)."""
    client.zrem(keys.active(tenant), gen_id)
