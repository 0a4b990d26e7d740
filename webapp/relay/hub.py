"""The per-process pub/sub hub: one Redis connection fans out to every reader.

flask-sse opens a Redis connection per browser; here a web process holds
one subscriber connection, read by one greenlet, whatever the number of
readers. Channels are subscribed while at least one local reader watches
(refcounted, with a short linger so a reconnecting client reuses them).
Each reader has a bounded queue: a reader that falls behind is flagged and
catches up from the log instead of growing this process's memory.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import redis

from spool.connection import quick_check_options
from spool.replies import ReplyReader
from webapp.relay.subscription import (  # noqa: F401 (re-exported: the hub's vocabulary)
    GAP,
    READER_QUEUE_SIZE,
    Gap,
    Item,
    Live,
    Subscription,
    held_bytes,
    live,
)

log = logging.getLogger("spool.hub")

SUBSCRIBE_TIMEOUT_S = 5.0
LINGER_S = 5.0  # keep a channel subscribed this long after its last reader leaves
RECONNECT_MAX_S = 2.0
KEEPALIVE_S = 10.0  # PING the subscriber connection this often
STALE_AFTER_S = 3 * KEEPALIVE_S  # no bytes for this long: the connection is dead
MAX_BATCH = 512  # messages read off the connection before they are handed out
MAX_BATCH_BYTES = 1024 * 1024  # ...or this many bytes of them (large events)


@dataclass(frozen=True)
class PubSubVerbs:
    """The commands and reply kinds of one pub/sub flavour."""

    subscribe: str
    unsubscribe: str
    message: bytes
    confirmed: bytes


CLASSIC = PubSubVerbs("SUBSCRIBE", "UNSUBSCRIBE", b"message", b"subscribe")
# Redis 7 sharded pub/sub (Cluster): the connection must be to the shard
# that owns the channel's slot (see webapp/relay/shardhub.py).
SHARDED = PubSubVerbs("SSUBSCRIBE", "SUNSUBSCRIBE", b"smessage", b"ssubscribe")


class HubUnavailable(Exception):
    """The hub could not confirm a subscription (Redis unreachable)."""


@dataclass
class _Channel:
    subs: set[Subscription] = field(default_factory=set)
    confirmed: gevent.event.Event = field(default_factory=gevent.event.Event)
    idle_since: float | None = None


class Hub:
    """Fan-out of Redis pub/sub messages to local readers."""

    def __init__(self, url: str, verbs: PubSubVerbs = CLASSIC) -> None:
        self._verbs = verbs
        # Replies are read below redis-py (spool.replies); the quick read check
        # serves its fallback, without hiredis.
        self._pool = redis.ConnectionPool.from_url(
            url, protocol=2, socket_timeout=None, socket_keepalive=True,
            **quick_check_options(url),
        )
        self._channels: dict[str, _Channel] = {}
        self._conn: Any = None
        self._connected = gevent.event.Event()
        self._send_lock = gevent.lock.Semaphore()
        self._greenlets: list[gevent.Greenlet] = []
        self._last_read = time.monotonic()

    # -- readers' side ----------------------------------------------------
    def subscribe(self, channel: str) -> Subscription:
        """Register a reader; returns once Redis confirms the channel is live."""
        self._ensure_started()
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
            self._send(self._verbs.subscribe, channel)
        sub = Subscription(channel)
        state.subs.add(sub)
        state.idle_since = None
        if not state.confirmed.wait(SUBSCRIBE_TIMEOUT_S):
            self.unsubscribe(sub)
            raise HubUnavailable(channel)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Deregister a reader; the channel lingers briefly before UNSUBSCRIBE."""
        state = self._channels.get(sub.channel)
        if state is None:
            return
        state.subs.discard(sub)
        if not state.subs:
            state.idle_since = time.monotonic()

    @property
    def reader_count(self) -> int:
        """Readers attached in this process (for metrics)."""
        return sum(len(state.subs) for state in self._channels.values())

    # -- the hub's own greenlets --------------------------------------------
    def _ensure_started(self) -> None:
        # Started on first use, never at import or app creation, so a
        # pre-forking server never carries greenlets or sockets into workers.
        if not self._greenlets:
            self._greenlets = [gevent.spawn(self._run), gevent.spawn(self._housekeep)]

    def _send(self, *args: str) -> None:
        if not self._connected.is_set():
            return  # (re)subscribed on reconnect
        with self._send_lock:
            try:
                self._conn.send_command(*args)
            except (redis.RedisError, OSError):
                log.warning("hub send failed; reconnecting")
                self._drop_connection()

    def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                self._connect()
                delay = 0.05
                self._read_loop()
            except (redis.RedisError, OSError) as exc:
                log.warning("hub connection lost: %s", type(exc).__name__)
            self._drop_connection()
            gevent.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _connect(self) -> None:
        conn = self._pool.make_connection()
        conn.connect()
        self._conn = conn
        self._last_read = time.monotonic()
        self._connected.set()
        with self._send_lock:
            for channel in list(self._channels):
                conn.send_command(self._verbs.subscribe, channel)
        log.info("hub connected; %d channels", len(self._channels))

    def _drop_connection(self) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if self._conn is not None:
            self._conn.disconnect()
        if not was_connected:
            return
        for state in self._channels.values():
            state.confirmed.clear()
            for sub in state.subs:
                sub.offer(GAP)  # messages may have been lost while down

    def _read_loop(self) -> None:
        replies = ReplyReader(self._conn)
        while True:
            # Everything already received is taken before anything is handed
            # out: a channel's messages then reach each reader as one item
            # (one socket write), however far behind the hub has fallen.
            batch: dict[str, list[bytes]] = {}
            size = self._take(replies.next(), batch)
            taken = 1
            while taken < MAX_BATCH and size < MAX_BATCH_BYTES:
                reply = replies.next_ready()
                if reply is None:
                    break
                size += self._take(reply, batch)
                taken += 1
            self._last_read = time.monotonic()
            for channel, raws in batch.items():
                self._dispatch(channel, raws)
            # A flood never empties the socket, so reading never waits: let
            # readers, new connections and requests have their turn.
            gevent.sleep(0)

    def _take(self, reply: Any, batch: dict[str, list[bytes]]) -> int:
        """File a message under its channel; returns its size (0 for anything else)."""
        kind = reply[0]
        if kind == self._verbs.message:
            batch.setdefault(reply[1].decode(), []).append(reply[2])
            return len(reply[2])
        if kind == self._verbs.confirmed:
            state = self._channels.get(reply[1].decode())
            if state is not None:
                state.confirmed.set()
        return 0

    def _dispatch(self, channel: str, raws: list[bytes]) -> None:
        state = self._channels.get(channel)
        if state is None or not state.subs:
            return
        # Several entries are published together as lines (spool.appendscript).
        # Each item's `weight`, from the lengths at hand (a token's share of the
        # hub's work stays a few additions).
        if len(raws) == 1 and b"\n" not in raws[0]:
            item: Item = live(raws[0])
            size = held_bytes(len(raws[0]), 1)
        else:
            item = tuple(live(line) for raw in raws for line in raw.split(b"\n"))
            size = held_bytes(sum(map(len, raws)), len(item))
        for sub in state.subs:
            sub.offer(item, size)

    def _housekeep(self) -> None:
        while True:
            gevent.sleep(1.0)
            now = time.monotonic()
            for channel, state in list(self._channels.items()):
                if state.idle_since is not None and now - state.idle_since >= LINGER_S:
                    del self._channels[channel]
                    self._send(self._verbs.unsubscribe, channel)
            if self._connected.is_set():
                if now - self._last_read > STALE_AFTER_S:
                    log.warning("hub connection silent for %.0fs; reconnecting", STALE_AFTER_S)
                    self._drop_connection()
                elif now - self._last_read > KEEPALIVE_S:
                    self._send("PING")
