"""Redis connections: one for Spool's own keys (text), one for RQ (bytes)."""

from __future__ import annotations

import redis

SOCKET_CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 30
POOL_WAIT_S = 10.0  # longest wait for a free connection of a blocking pool


def _client(url: str, decode: bool, max_connections: int | None, blocking: bool) -> redis.Redis:
    options = {
        "decode_responses": decode,
        "socket_keepalive": True,
        "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }
    if blocking:
        # A small fixed pool that callers wait on (cooperatively under gevent):
        # Redis connections stay O(1) per process however many requests run.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections or 1, timeout=POOL_WAIT_S, **options)
        return redis.Redis(connection_pool=pool)
    return redis.Redis.from_url(url, max_connections=max_connections, **options)


def connect(url: str, *, max_connections: int | None = None,
            blocking: bool = False) -> redis.Redis:
    """A client for Spool's keys: decoded strings, keepalive, bounded pool."""
    return _client(url, True, max_connections, blocking)


def connect_rq(url: str, *, max_connections: int | None = None,
               blocking: bool = False) -> redis.Redis:
    """A client for RQ, which stores pickled bytes and so must not decode."""
    return _client(url, False, max_connections, blocking)
