"""Redis connections: one for Spool's own keys (text), one for RQ (bytes)."""

from __future__ import annotations

from typing import Any

import redis

SOCKET_CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 30


POOL_WAIT_S = 30.0  # a blocking pool's longest wait for a free connection


def _client(url: str, max_connections: int | None, blocking: bool, **options: Any) -> redis.Redis:
    options.update(socket_keepalive=True, socket_connect_timeout=SOCKET_CONNECT_TIMEOUT_S,
                   health_check_interval=HEALTH_CHECK_INTERVAL_S)
    if blocking:
        # Hundreds of greenlets share a few connections: wait for one, never fail.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections or 50, timeout=POOL_WAIT_S, **options)
        return redis.Redis(connection_pool=pool)
    return redis.Redis.from_url(url, max_connections=max_connections, **options)


def connect(url: str, *, max_connections: int | None = None, blocking: bool = False) -> redis.Redis:
    """A client for Spool's keys: decoded strings, keepalive, bounded pool.

    With `blocking`, callers past `max_connections` wait for a free connection
    instead of failing (what a process with hundreds of greenlets needs).
    """
    return _client(url, max_connections, blocking, decode_responses=True)


def connect_rq(url: str, *, max_connections: int | None = None,
               blocking: bool = False) -> redis.Redis:
    """A client for RQ, which stores pickled bytes and so must not decode."""
    return _client(url, max_connections, blocking)
