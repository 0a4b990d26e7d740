"""One round trip per tick for every request admitting a generation.

Each admission is one script call; sent one by one, each would pay its own
round trip, and on loopback the send and receive system calls of a round
trip cost more CPU than the request's Python. A request's greenlet queues
its commands here; one greenlet sends whatever queued while its previous
round trip was in flight, as one pipeline, and hands each caller its own
replies. Alone, a request pays exactly its own round trip; under load, N
requests share one (the worker's event writer does the same for appends).

A shared round trip must not become a wait, though: gevent runs every ready
greenlet before the batcher's turn, so a burst of 300 POSTs parsed all 300
bodies (~150 ms of CPU) before the first admission left, and the worker
started the first job 100-200 ms after its request was parsed (queue wait
p50 183 ms). Once SPILL_AT calls are waiting, the call that makes them so
sends them itself, at once, on another connection of the pool: a job
reaches the queue at most SPILL_AT parses after its request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import hiredis
import redis

from spool.connection import exchange

log = logging.getLogger("spool.web")

MAX_BATCH = 500  # requests per pipeline
SPILL_AT = 16  # calls waiting for the batcher's turn before the last of them sends them


@dataclass(slots=True)
class _Call:
    commands: list[tuple[Any, ...]]
    done: gevent.event.AsyncResult


class PipelineBatcher:
    """Sends queued command lists on `client` in shared pipelines."""

    def __init__(self, client: Any, scripts: dict[str, str] | None = None) -> None:
        self.client = client
        self.scripts = scripts or {}  # sha -> source, loaded again after a NOSCRIPT
        self._pending: list[_Call] = []
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None

    def call(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send `commands` (in order, not as a transaction); their replies.

        Replies are Redis's own (decoded as the client decodes; no redis-py
        response callbacks). A command's error comes back as its reply; a
        connection error raises.
        """
        done = gevent.event.AsyncResult()
        self._pending.append(_Call(list(commands), done))
        if len(self._pending) >= SPILL_AT:
            batch, self._pending = self._pending, []
            self._deliver(batch)
        else:
            if self._greenlet is None or self._greenlet.dead:
                self._greenlet = gevent.spawn(self._run)
            self._wake.set()
        replies: list[Any] = done.get()
        return replies

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self._deliver(batch)

    def _deliver(self, batch: list[_Call]) -> None:
        """One round trip for `batch`; each caller gets its replies (or the failure)."""
        try:
            replies = self._send([c for call in batch for c in call.commands])
        except BaseException as exc:  # any failure: every caller hears it, none hangs
            # A spilling request's greenlet may itself be killed (a shutdown):
            # the others then hear a connection error, as for a lost Redis.
            failure = exc if isinstance(exc, Exception) else redis.ConnectionError(
                f"the round trip was interrupted ({type(exc).__name__})")
            for call in batch:
                if not call.done.ready():
                    call.done.set_exception(failure)
            if failure is not exc:
                raise
            return
        at = 0
        for call in batch:
            call.done.set(replies[at:at + len(call.commands)])
            at += len(call.commands)

    def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        # What a redis-py pipeline does, less its per-argument Python: an
        # admission is ~90 arguments (record fields, RQ's enqueue), and
        # redis-py's encoder and packer cost ~60 µs of it, ~9 % of a POST (py-spy);
        # hiredis packs the whole command in C.
        packed = b"".join([hiredis.pack_command(command) for command in commands])
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            replies = conn.retry.call_with_retry(
                lambda: exchange(conn, packed, len(commands)),
                lambda _error: conn.disconnect())
        finally:
            pool.release(conn)
        missing = [i for i, reply in enumerate(replies)
                   if isinstance(reply, redis.exceptions.NoScriptError)]
        if missing:
            # Redis lost its scripts (restart, SCRIPT FLUSH): none of these ran; load, resend.
            for source in self.scripts.values():
                self.client.script_load(source)
            again = self._send([commands[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

