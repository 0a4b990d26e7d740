"""Redis connections: one for Spool's own keys (text), one for RQ (bytes).

Spool's keys may live on a single Redis or on a Redis Cluster. Every key of
one generation shares a hash tag, so the atomic append touches one slot and
is legal on a Cluster. On a Cluster the append publishes with SPUBLISH
(sharded pub/sub, Redis 7+): a message then travels only inside the shard
that owns the generation instead of being broadcast to every node, which is
what lets pub/sub grow with the number of shards. Publishers (workers) and
subscribers (web) must agree on that choice, so it is derived from one fact
only: whether the client is a Cluster client.

RQ does not support Redis Cluster; its queues stay on `RQ_REDIS_URL`, a
plain Redis.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import select
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis
from redis._parsers import _HiredisParser
from redis.cluster import RedisCluster

from spool.metrics import RECORDER, REDIS_ERRORS
from spool.settings import ConfigError

log = logging.getLogger("spool.connection")

SOCKET_CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 30
SHARDED_PUBSUB_SINCE = (7, 0)
DETECT_TIMEOUT_S = 2.0  # auto-detection must not hold a booting process for long
POOL_WAIT_S = 30.0  # a blocking pool's longest wait for a free connection



# Round trips to Redis by this process, by purpose (`io_purpose`): one per
# command sent alone or per pipeline. A plain counter, taken by the metrics
# flusher (`spool_redis_round_trips_total`); the benchmark reads it to count
# round trips per generation, web and worker apart.
ROUND_TRIPS: Counter[str] = Counter()
_PURPOSE: contextvars.ContextVar[str] = contextvars.ContextVar("spool_io_purpose",
                                                               default="other")


def io_purpose(name: str) -> None:
    """Count this greenlet's (or thread's) round trips under `name` (e.g. "append")."""
    _PURPOSE.set(name)


def take_round_trips() -> dict[str, int]:
    """Round trips by purpose since the last take."""
    taken = dict(ROUND_TRIPS)
    ROUND_TRIPS.clear()
    return taken


class QuickReadCheck:
    """A connection whose "anything to read?" check does not go round the event loop."""

    def can_read(self, timeout: float = 0) -> bool:
        """redis-py's check, minus its trip through the event loop when nothing waits.

        A pool checks every connection it hands out (`can_read(0)`, a stale
        reply or a closed socket) with `select.poll`, which gevent replaces
        with a poll that always switches to its hub: each checkout then waited
        behind every other ready greenlet (in a burst of 300 POSTs, 130-300 ms
        per admission) and cost ~30 µs. The web's pub/sub hub asks the same
        after each message it reads (is more waiting?), so each burst it
        read also paid a turn of the loop before handing anything out (15.2
        µs of CPU per check, against 2.4 here). A zero-timeout poll never
        blocks, so the system's own poll answers here; anything to read (or a
        closed socket, which reads as readable) still goes through redis-py.
        """
        sock = getattr(self, "_sock", None)
        if (timeout == 0 and sock is not None and not hasattr(sock, "pending")
                and isinstance(getattr(self, "_parser", None), _HiredisParser)
                and not self._parser._reader.has_data()  # type: ignore[attr-defined]
                and not readable_now(sock)):
            return False
        return bool(super().can_read(timeout))  # type: ignore[misc]


class _CountErrors(QuickReadCheck):
    """Counts failed connects, sends and reads in `spool_redis_errors_total`,
    and every send (one round trip) in ROUND_TRIPS.

    Counting at the connection catches every caller (appends, reads,
    heartbeats, RQ) without touching them.
    """

    def connect(self) -> Any:
        try:
            return super().connect()  # type: ignore[misc]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            RECORDER.inc(REDIS_ERRORS, type(exc).__name__)
            raise

    def send_packed_command(self, *args: Any, **kwargs: Any) -> Any:
        ROUND_TRIPS[_PURPOSE.get()] += 1
        try:
            return super().send_packed_command(*args, **kwargs)  # type: ignore[misc]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            RECORDER.inc(REDIS_ERRORS, type(exc).__name__)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            RECORDER.inc(REDIS_ERRORS, type(exc).__name__)
            raise


@functools.cache
def _system_poll() -> Callable[[], Any]:
    """The system's `select.poll`, also where gevent has patched `select`."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return select.poll
    found: Callable[[], Any] = monkey.get_original("select", "poll")
    return found


def readable_now(sock: Any) -> bool:
    """Whether `sock` has bytes (or its end) waiting, without waiting or yielding."""
    poller = _system_poll()()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class CountingConnection(_CountErrors, redis.Connection):
    """A TCP connection that counts its errors."""


class QuickCheckConnection(QuickReadCheck, redis.Connection):
    """A TCP connection with the quick read check and no counting (a pub/sub
    reader's: its subscribes are not round trips of a request or a job)."""


class CountingSSLConnection(_CountErrors, redis.SSLConnection):
    """A TLS connection that counts its errors."""


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def quick_check_options(url: str) -> dict[str, Any]:
    """Pool options giving a plain-TCP `url`'s connections the quick read check."""
    return {"connection_class": QuickCheckConnection} if _scheme(url) == "redis" else {}


def _counting(url: str, cluster: bool) -> dict[str, Any]:
    scheme = _scheme(url)
    if scheme == "redis":
        return {"connection_class": CountingConnection}
    if scheme == "rediss" and not cluster:  # the Cluster client sets TLS up itself
        return {"connection_class": CountingSSLConnection}
    return {}


def detect_cluster(url: str) -> bool:
    """True when the server at `url` runs in cluster mode (`INFO cluster`).

    An unreachable server is assumed to be a single node, with a warning:
    production deployments should say `SPOOL_REDIS_CLUSTER=1` or `0`.
    """
    probe = redis.Redis.from_url(
        url, socket_connect_timeout=DETECT_TIMEOUT_S, socket_timeout=DETECT_TIMEOUT_S
    )
    try:
        info: dict[str, Any] = probe.info("cluster")
        return bool(int(info.get("cluster_enabled", 0)))
    except redis.RedisError as exc:
        log.warning(
            "could not detect Redis Cluster mode (%s); assuming a single node. "
            "Set SPOOL_REDIS_CLUSTER=1 or 0 to skip detection.", type(exc).__name__,
        )
        return False
    finally:
        probe.close()


def _single_node(url: str, max_connections: int | None, blocking: bool,
                 queue_class: Any = None, **options: Any) -> redis.Redis:
    options.update(_counting(url, False))
    if blocking:
        # Hundreds of greenlets share a few connections: wait for one, never fail.
        if queue_class is not None:
            options["queue_class"] = queue_class
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections or 50, timeout=POOL_WAIT_S, **options)
        return redis.Redis(connection_pool=pool)
    return redis.Redis.from_url(url, max_connections=max_connections, **options)


def connect(
    url: str,
    *,
    max_connections: int | None = None,
    cluster: bool | None = False,
    blocking: bool = False,
    queue_class: Any = None,
) -> Any:
    """A client for Spool's keys: decoded strings, keepalive, bounded pool.

    `cluster`: True for a Redis Cluster client, False for a single node,
    None to ask the server (`SPOOL_REDIS_CLUSTER` unset). With `blocking`,
    callers past `max_connections` wait for a free connection instead of
    failing (what a process with hundreds of greenlets needs); `queue_class`
    then replaces the pool's `queue.LifoQueue` (the web's is fair to waiters).
    """
    if cluster is None:
        cluster = detect_cluster(url)
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_keepalive": True,
        "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }
    if cluster:
        # The Cluster client keeps one pool per node; the bound is per node.
        return RedisCluster.from_url(url, max_connections=max_connections or 2**31, **common,
                                     **_counting(url, True))
    return _single_node(url, max_connections, blocking, queue_class, **common)


def is_cluster(client: Any) -> bool:
    """True for a Redis Cluster client (or one of its pipelines)."""
    return isinstance(client, RedisCluster)


def supports_sharded_pubsub(client: RedisCluster) -> bool:
    """True when the Cluster's servers have SPUBLISH/SSUBSCRIBE (Redis 7+).

    Asked once at startup; if the answer cannot be had, Redis 7 is assumed
    (every supported Redis is), so web and worker still agree.
    """
    try:
        node = client.get_redis_connection(client.get_default_node())
        version = str(node.info("server")["redis_version"])
        return tuple(int(part) for part in version.split(".")[:2]) >= SHARDED_PUBSUB_SINCE
    except (redis.RedisError, KeyError, ValueError) as exc:
        log.warning("could not read the Redis version (%s); assuming 7+", type(exc).__name__)
        return True


def publish_command(client: Any) -> str:
    """The command the event log publishes with: SPUBLISH on a Redis 7+ Cluster.

    On an older Cluster classic PUBLISH still works (it is broadcast to every
    node), only without the scaling benefit.
    """
    if is_cluster(client) and supports_sharded_pubsub(client):
        return "SPUBLISH"
    return "PUBLISH"


def connect_rq(url: str, *, max_connections: int | None = None,
               blocking: bool = False) -> redis.Redis:
    """A client for RQ, which stores pickled bytes and so must not decode."""
    return _single_node(url, max_connections, blocking, socket_keepalive=True,
                        socket_connect_timeout=SOCKET_CONNECT_TIMEOUT_S,
                        health_check_interval=HEALTH_CHECK_INTERVAL_S)


def check_rq_url(redis_url: str, rq_redis_url: str, cluster: bool) -> None:
    """Refuse to put RQ on a Cluster: it would fail later, obscurely."""
    if cluster and rq_redis_url == redis_url:
        raise ConfigError(
            "REDIS_URL is a Redis Cluster, which RQ does not support: "
            "set RQ_REDIS_URL to a plain Redis for the job queues"
        )
