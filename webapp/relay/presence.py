"""Readers known across processes, and `abandon_after_s`.

Each web process marks the generations it is serving in the generation's
`readers` hash: field = this process's id, value = `"<count> <expires_ms>"`.
The process rewrites its field while readers stay attached, so a process
that dies simply stops counting once its claim expires — Redis 7.0 has no
per-field TTL, hence the deadline in the value (the whole hash also expires).

`abandon_after_s`: generations created with it sit in one sorted set scored
by the time they would be abandoned. Any process with readers pushes that
time forward; every web process sweeps the set and cancels (reason
`abandoned`) a due generation that has no live reader anywhere. A reader
that comes back within the window finds everything in the log.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping

import gevent
import redis

from spool.events import TERMINAL_STATUSES
from spool.generations import Generations
from spool.keys import Keys

log = logging.getLogger("spool.presence")

CLAIM_TTL_S = 6.0  # a process's reader claim lapses this long after its last refresh
REFRESH_S = 2.0  # claims of attached readers are rewritten this often
FLUSH_S = 0.2  # attach/detach changes reach Redis within this
SWEEP_S = 1.0  # how often each web process looks for abandoned generations
SWEEP_BATCH = 200  # due generations examined per sweep


def process_id() -> str:
    """A unique id for this web process (host, pid and a random part)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def live_readers(fields: Mapping[str, str], now_ms: float) -> int:
    """Sum of the unexpired per-process counts of one `readers` hash."""
    total = 0
    for value in fields.values():
        count, _, expires = value.partition(" ")
        try:
            if float(expires) > now_ms:
                total += int(count)
        except ValueError:
            continue  # a malformed field counts as no reader
    return total


def count_readers(client: redis.Redis, keys: Keys, gen_id: str) -> int:
    """Readers attached to `gen_id` right now, across all web processes."""
    fields: dict[str, str] = client.hgetall(keys.readers(gen_id))  # type: ignore[assignment]
    return live_readers(fields, time.time() * 1000)


class Presence:
    """This process's readers, published to Redis; and the abandon sweeper."""

    def __init__(self, client: redis.Redis, keys: Keys, generations: Generations) -> None:
        self.client = client
        self.keys = keys
        self.generations = generations
        self.counts: dict[str, int] = {}
        self.abandon_s: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._id: str | None = None
        self._greenlets: list[gevent.Greenlet] = []

    def start(self) -> None:
        """Start the refresher and sweeper greenlets (idempotent; never at import)."""
        if not self._greenlets:
            self._id = process_id()  # after gunicorn's fork, so each worker differs
            self._greenlets = [gevent.spawn(self._refresh_loop), gevent.spawn(self._sweep_loop)]

    def attach(self, gen_id: str, abandon_after_s: int | None) -> None:
        """A local reader starts reading `gen_id`."""
        self.start()
        self.counts[gen_id] = self.counts.get(gen_id, 0) + 1
        if abandon_after_s:
            self.abandon_s[gen_id] = abandon_after_s
        self._dirty.add(gen_id)

    def detach(self, gen_id: str) -> None:
        """A local reader of `gen_id` went away."""
        left = self.counts.get(gen_id, 0) - 1
        if left > 0:
            self.counts[gen_id] = left
        else:
            self.counts.pop(gen_id, None)
        self._dirty.add(gen_id)

    # -- publishing claims ----------------------------------------------------
    def _refresh_loop(self) -> None:
        last_full = 0.0
        while True:
            gevent.sleep(FLUSH_S)
            now = time.monotonic()
            full = now - last_full >= REFRESH_S
            targets = set(self.counts) | self._dirty if full else set(self._dirty)
            if not targets:
                continue
            self._dirty -= targets
            try:
                self._write(targets)
            except redis.RedisError as exc:
                self._dirty |= targets  # retried on the next tick
                log.warning("presence refresh failed: %s", type(exc).__name__)
                continue
            if full:
                last_full = now

    def _write(self, gen_ids: set[str]) -> None:
        now_ms = time.time() * 1000
        expires = f"{now_ms + CLAIM_TTL_S * 1000:.0f}"
        pipe = self.client.pipeline(transaction=False)
        index = self.keys.abandon_index()
        for gen_id in gen_ids:
            key = self.keys.readers(gen_id)
            count = self.counts.get(gen_id, 0)
            abandon = self.abandon_s.get(gen_id)
            if count:
                pipe.hset(key, self._id or "", f"{count} {expires}")
                pipe.pexpire(key, int(CLAIM_TTL_S * 1000))
            else:
                pipe.hdel(key, self._id or "")
                self.abandon_s.pop(gen_id, None)
            if abandon:
                # Watched until now: the window restarts from this moment.
                pipe.zadd(index, {gen_id: now_ms + abandon * 1000}, xx=True)
        pipe.execute()

    # -- abandoning -------------------------------------------------------------
    def _sweep_loop(self) -> None:
        while True:
            gevent.sleep(SWEEP_S)
            try:
                self.sweep()
            except redis.RedisError as exc:
                log.warning("abandon sweep failed: %s", type(exc).__name__)

    def sweep(self) -> None:
        """Cancel due generations nobody reads; push back those someone does."""
        index = self.keys.abandon_index()
        now_ms = time.time() * 1000
        due: list[str] = self.client.zrangebyscore(  # type: ignore[assignment]
            index, "-inf", now_ms, start=0, num=SWEEP_BATCH)
        for gen_id in due:
            record = self.generations.load(gen_id)
            if record is None or record.get("status") in TERMINAL_STATUSES:
                self.client.zrem(index, gen_id)
                continue
            abandon_s = int(record.get("abandon_after_s") or 0)
            if count_readers(self.client, self.keys, gen_id) > 0 or not abandon_s:
                if abandon_s:
                    self.client.zadd(index, {gen_id: now_ms + abandon_s * 1000}, xx=True)
                else:
                    self.client.zrem(index, gen_id)
                continue
            # Remove first: with several web processes only one goes on to cancel.
            if self.client.zrem(index, gen_id):
                log.info("generation %s abandoned (no reader for %ss)", gen_id, abandon_s)
                self.generations.request_cancel(gen_id, record, reason="abandoned")
