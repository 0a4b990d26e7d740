"""Redis connections: one for Spool's own keys (text), one for RQ (bytes)."""

from __future__ import annotations

import redis

SOCKET_CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 30


def connect(url: str, *, max_connections: int | None = None) -> redis.Redis:
    """A client for Spool's keys: decoded strings, keepalive, bounded pool."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_keepalive=True,
        socket_connect_timeout=SOCKET_CONNECT_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        max_connections=max_connections,
    )


def connect_rq(url: str) -> redis.Redis:
    """A client for RQ, which stores pickled bytes and so must not decode."""
    return redis.Redis.from_url(
        url,
        socket_keepalive=True,
        socket_connect_timeout=SOCKET_CONNECT_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
    )
