"""The web's admissions on one pipelined connection, sent as soon as they are ready.

Each admission is one script call; sent one by one on pooled connections,
each would pay its own round trip, and on loopback the send and receive
system calls of a round trip cost more CPU than the request's Python. A
request's greenlet queues its commands here; one greenlet writes whatever
queued since its last turn as one pipeline, and hands each caller its own
replies. Alone, a request pays exactly its own round trip; under load, N
requests share one (the worker's event writer does the same for appends).

A shared round trip must not become a wait, though. gevent runs every ready
greenlet before a woken one gets its turn: in a burst of 300 POSTs the
batcher's turn came after ~all bodies were parsed, and a pooled connection
stayed taken until its borrower's turn to read the reply came round, so
later admissions waited 100-460 ms for a connection (queue wait p99 200-300
ms for 300 concurrent POSTs). Now nothing waits for a connection or for
replies before writing: every write goes at once onto this batcher's own
connection, one reader greenlet takes the replies in order, and once
SPILL_AT calls are waiting the call that makes them so writes them itself.
A job reaches the queue at most SPILL_AT parses after its request.

After a connection error, the batches written on that connection are
written once more on a new one (as a redis-py pipeline retries): the
admission script answers `ok` without doing anything twice when the
generation's record already exists. A second failure is the callers'.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
import gevent.lock
import hiredis
import redis

log = logging.getLogger("spool.web")

MAX_BATCH = 500  # requests per pipeline
SPILL_AT = 16  # calls waiting for the batcher's turn before the last of them writes them


@dataclass(slots=True)
class _Call:
    commands: list[tuple[Any, ...]]
    done: gevent.event.AsyncResult


@dataclass(slots=True)
class _Batch:
    calls: list[_Call]
    commands: list[tuple[Any, ...]]
    written: int = 0  # times written (a batch is written again once after a connection error)
    replies: list[Any] = field(default_factory=list)

    @classmethod
    def of(cls, calls: list[_Call]) -> _Batch:
        """One batch of `calls`, their commands in order."""
        return cls(calls, [command for call in calls for command in call.commands])


class PipelineBatcher:
    """Writes queued command lists on one connection of `client`'s kind; replies in order."""

    def __init__(self, client: Any, scripts: dict[str, str] | None = None) -> None:
        self.client = client
        self.scripts = scripts or {}  # sha -> source, loaded again after a NOSCRIPT
        self._pending: list[_Call] = []
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        pool = client.connection_pool
        self._conn = pool.connection_class(**pool.connection_kwargs)
        self._writing = gevent.lock.Semaphore()
        self._inflight: deque[_Batch] = deque()
        self._replies_due = gevent.event.Event()
        self._reader: gevent.Greenlet | None = None
        self._epoch = 0  # connections lost so far: a reader's error may be about an old one

    def call(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send `commands` (in order, not as a transaction); their replies.

        Replies are Redis's own (decoded as the client decodes; no redis-py
        response callbacks). A command's error comes back as its reply; a
        connection error raises.
        """
        done = gevent.event.AsyncResult()
        self._pending.append(_Call(list(commands), done))
        if len(self._pending) >= SPILL_AT:
            calls, self._pending = self._pending, []
            self._write(_Batch.of(calls))
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
                calls, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self._write(_Batch.of(calls))

    def _write(self, batch: _Batch) -> None:
        """Write `batch` now (connecting if need be); its replies come to the reader."""
        packed = b"".join([hiredis.pack_command(command) for command in batch.commands])
        batch.written += 1
        try:
            with self._writing:  # a write that yields mid-way is never interleaved
                # No health check: its PING would read a reply that is another batch's.
                self._conn.send_packed_command([packed], check_health=False)
                self._inflight.append(batch)
        except BaseException as exc:
            self._lost(exc)
            if batch.written < 2 and isinstance(exc, Exception):
                self._write(batch)
            else:
                _fail(batch, exc)
                if not isinstance(exc, Exception):
                    raise
            return
        if self._reader is None or self._reader.dead:
            self._reader = gevent.spawn(self._read)
        self._replies_due.set()

    def _read(self) -> None:
        """Take replies off the connection for the batches written, oldest first."""
        while True:
            if not self._inflight:
                self._replies_due.clear()
                self._replies_due.wait()
                continue
            batch, epoch = self._inflight[0], self._epoch
            try:
                while len(batch.replies) < len(batch.commands):
                    try:
                        batch.replies.append(self._conn.read_response())
                    except redis.ResponseError as error:
                        batch.replies.append(error)
            except BaseException as exc:
                if epoch == self._epoch:  # else a writer found the connection lost first
                    self._lost(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            self._inflight.popleft()
            self._deliver(batch)

    def _lost(self, exc: BaseException) -> None:
        """The connection failed: the batches in flight on it are written again, or fail."""
        self._epoch += 1
        self._conn.disconnect()
        lost = list(self._inflight)
        self._inflight.clear()
        for batch in lost:
            batch.replies = []
            if batch.written < 2 and isinstance(exc, Exception):
                self._write(batch)
            else:
                _fail(batch, exc)

    def _deliver(self, batch: _Batch) -> None:
        missing = [i for i, reply in enumerate(batch.replies)
                   if isinstance(reply, redis.exceptions.NoScriptError)]
        if missing:
            # Redis lost its scripts (restart, SCRIPT FLUSH): none of these ran; load, resend.
            gevent.spawn(self._resend, batch, missing)
            return
        at = 0
        for call in batch.calls:
            call.done.set(batch.replies[at:at + len(call.commands)])
            at += len(call.commands)

    def _resend(self, batch: _Batch, missing: list[int]) -> None:
        try:
            for source in self.scripts.values():
                self.client.script_load(source)
            again = self.call(*[batch.commands[i] for i in missing])
        except Exception as exc:  # every caller hears it, none hangs
            _fail(batch, exc)
            return
        for i, reply in zip(missing, again, strict=True):
            batch.replies[i] = reply
        self._deliver(batch)


def _fail(batch: _Batch, exc: BaseException) -> None:
    """Every caller of `batch` hears the failure (a kill becomes a connection error)."""
    failure = exc if isinstance(exc, Exception) else redis.ConnectionError(
        f"the round trip was interrupted ({type(exc).__name__})")
    for call in batch.calls:
        if not call.done.ready():
            call.done.set_exception(failure)
