"""Batched event writes: every generation's appends share one pipeline per tick.

A runner's `emit` only queues; one flusher greenlet sends whatever queued
while its previous round trip was in flight. One live generation pays one
round trip per event; 500 pay about one per tick, not 500.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import redis

from spool.appendwire import DELTA_ARGC, delta_prefix, encode_arguments, encode_delta, pack_call
from spool.connection import io_purpose, is_cluster
from spool.events import DELTA, ERROR, TOOL_CALL
from spool.log import APPENDED_MISSING, EventLog
from spool.replies import exchange
from worker.writeretry import WriteRetry, needs_resend, reason_of, unavailable_event

log = logging.getLogger("spool.writer")

MAX_BATCH = 2000  # appends per pipeline
# One round trip per tick at most: appends queued within a tick share it.
# A lone event after a quiet spell goes at once; under load each tick carries
# every generation's events (fewer syscalls and Redis calls per token), at a
# cost of at most one tick of added inter-token delay. A generation's first
# output (what its reader waits for as time to first token) cuts a tick
# short, at most once per EARLY_GAP_S: a first token queued just behind
# another's waits that long, not a whole tick (once per tick, ~45 % of 150
# arrivals a second waited up to 4 ms), and flushes stay under one per
# EARLY_GAP_S whatever the arrivals.
TICK_S = 0.004
EARLY_GAP_S = 0.001
EVENTS_PER_CALL = 200  # appends per script call (bounds how long Redis runs one call)
DRAIN_POLL_S = 0.01
# Backpressure: once this many appends wait for one flush, consecutive deltas
# of a generation are merged (fewer, larger deltas; the same text, in order).
MERGE_AFTER = 1000
OUTPUT_EVENTS = frozenset({DELTA, TOOL_CALL})
# What `emit(wait=True)` returns for an event the writer dropped after Redis
# refused writes past the retry bound (the generation ends `unavailable`).
GAVE_UP = -4

# Called (in the runner's greenlet) before a generation's first output event;
# it may raise to refuse the write (the concurrent worker checks its lease).
OutputGuard = Callable[[str], None]


@dataclass(slots=True)
class _Append:
    gen_id: str
    event: str
    data: Any
    fields: dict[str, Any] | None
    done: gevent.event.AsyncResult | None
    final: bool = False  # the `unavailable` end the writer adds itself: retried without bound


class BatchWriter:
    """Queues appends from many runners; flushes them in pipelines, in order."""

    def __init__(self, event_log: EventLog, retry: WriteRetry | None = None) -> None:
        self.log = event_log
        self.retry = retry or WriteRetry()
        self._unavailable: set[str] = set()  # given up on: ended `unavailable` by the writer
        self._pending: list[_Append] = []
        self._wake = gevent.event.Event()
        self._first_output = gevent.event.Event()  # a generation's first output is queued
        self._refused: set[str] = set()
        self._greenlet: gevent.Greenlet | None = None
        self._flushing = False
        self._with_output: set[str] = set()
        self.output_guard: OutputGuard | None = None
        # Dedup tokens: a writer id per run of a generation, and a number per
        # append, so an append resent after a lost reply is never applied twice.
        self._conn: Any = None  # the connection kept between flushes (_send)
        self._single = not is_cluster(event_log.client)  # else a Cluster (_send_cluster)
        self._prefixes: dict[str, bytes] = {}  # writer id -> its deltas' first arguments
        self._writer_ids: dict[str, str] = {}
        self._numbers: dict[str, int] = {}

    def start(self) -> None:
        """Start the flusher greenlet (idempotent)."""
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def emit(
        self,
        gen_id: str,
        event: str,
        data: Any,
        fields: dict[str, Any] | None = None,
        *,
        wait: bool = False,
    ) -> int | None:
        """Queue an append; with `wait`, block until written and return its seq."""
        if self._greenlet is None:
            self.start()
        if gen_id in self._unavailable:
            return GAVE_UP if wait else None  # the writer is ending it itself
        if gen_id not in self._with_output and event in OUTPUT_EVENTS:
            if self.output_guard is not None:
                self.output_guard(gen_id)
            self._with_output.add(gen_id)
            self._first_output.set()
        if not wait:  # the commonest case, once per token
            self._pending.append(_Append(gen_id, event, data, fields, None))
            self._wake.set()
            return None
        done = gevent.event.AsyncResult()
        self._pending.append(_Append(gen_id, event, data, fields, done))
        self._wake.set()
        seq: int = done.get()
        return seq

    def refused(self, gen_id: str) -> bool:
        """True once this generation's runner must stop: the append script
        refused a write (someone else ended the log, or it expired), or the
        writer gave up on it after Redis refused writes past the bound and
        ends it `unavailable` itself."""
        return gen_id in self._refused or gen_id in self._unavailable

    def forget(self, gen_id: str) -> None:
        """Drop per-generation state when its runner finishes."""
        self._refused.discard(gen_id)
        self._unavailable.discard(gen_id)
        self._with_output.discard(gen_id)
        writer_id = self._writer_ids.pop(gen_id, None)
        if writer_id is not None:
            self._prefixes.pop(writer_id, None)
        self._numbers.pop(gen_id, None)

    def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._pending or self._flushing:
            if time.monotonic() > deadline:
                return False
            gevent.sleep(DRAIN_POLL_S)
        return True

    def _run(self) -> None:
        io_purpose("append")  # counted apart from the job path's round trips
        last_flush = last_early = -TICK_S
        while True:
            self._wake.wait()
            self._wake.clear()
            tick_at = last_flush + TICK_S
            wait = tick_at - time.monotonic()
            if wait > 0 and self._first_output.wait(wait):  # a first output cuts it short
                gap = min(last_early + EARLY_GAP_S, tick_at) - time.monotonic()
                if gap > 0:
                    gevent.sleep(gap)
                last_early = time.monotonic()
            self._first_output.clear()
            last_flush = time.monotonic()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self._flushing = True
                try:
                    self._flush(batch)
                finally:
                    self._flushing = False

    def _flush(self, batch: list[_Append]) -> None:
        """Write `batch` in order, whatever Redis answers (worker/writeretry.py).

        Each attempt's answers are taken for the longest answered prefix;
        the rest is resent, in order, after a backoff. An append that did
        land before its reply was lost is answered, not applied again, and
        one that reaches Redis before an earlier one of the same writer is
        refused by the script (-3) and resent with it: no hole, no repeat.
        """
        if len(batch) >= MERGE_AFTER:
            batch = merge_deltas(batch)
        arguments = self._arguments
        items = [(item, arguments(item)) for item in batch]
        while items:
            results = self._attempt([arguments for _, arguments in items])
            done = 0
            while done < len(results) and not needs_resend(results[done]):
                done += 1
            for (item, _), result in zip(items, results[:done], strict=False):
                # The commonest answer (a seq, nobody waiting) needs nothing.
                if item.done is not None or type(result) is not int or result < 0:
                    self._answered(item, result)
            items = items[done:]
            if not items:
                self.retry.succeeded()
                return
            if done == len(results):
                continue  # cut short without a failure: the script was reloaded
            self.retry.failed(reason_of(results[done:]))
            if self.retry.expired():
                items = self._give_up(items)
            if items:
                gevent.sleep(self.retry.next_delay())

    def _attempt(self, arguments: list[Any]) -> list[Any]:
        """Send every append once; one answer per append for a prefix of them
        (an append's answer is its seq, or the error its group met)."""
        try:
            if not self._single:
                return self._send_cluster(arguments)
            # Packed once per attempt, by hand: redis-py's per-command
            # pipeline bookkeeping cost several times what Redis itself spends
            # on an append; and many appends per script call, as starting a
            # script costs Redis more than the commands inside it.
            groups = [arguments[i:i + EVENTS_PER_CALL]
                      for i in range(0, len(arguments), EVENTS_PER_CALL)]
            results: list[Any] = []
            self._send([self._pack_many(group) for group in groups],
                       [len(group) for group in groups], results)
            return results
        except redis.RedisError as exc:
            return [exc]  # nothing known to be answered: resend everything

    def _answered(self, item: _Append, result: Any) -> None:
        seq = result if isinstance(result, int) else APPENDED_MISSING
        if not isinstance(result, int):
            log.error("append to %s answered %r", item.gen_id, result)
        if seq < 0:
            self._refused.add(item.gen_id)  # the script's own verdict, nothing else
        if item.done is not None:
            item.done.set(seq)

    def _give_up(self, items: list[tuple[_Append, Any]]) -> list[tuple[_Append, Any]]:
        """Past the bound: drop every unwritten event, end each such generation `unavailable`.

        The `unavailable` event uses a fresh writer id (the dropped events
        used up the old one's numbers) and is retried until Redis takes it.
        """
        # Every generation with an unwritten event: in this flush, or queued behind it.
        lost = {item.gen_id for item, _ in items if not item.final}
        lost.update(item.gen_id for item in self._pending)
        if not lost:
            return items  # only `unavailable` ends left: those wait for Redis, however long
        dropped = [item for item, _ in items if item.gen_id in lost]
        dropped += [item for item in self._pending if item.gen_id in lost]
        self._pending = [item for item in self._pending if item.gen_id not in lost]
        for item in dropped:
            if item.done is not None:
                item.done.set(GAVE_UP)
        kept = [(item, arguments) for item, arguments in items if item.gen_id not in lost]
        for gen_id in sorted(lost):
            self._unavailable.add(gen_id)
            self._prefixes.pop(self._writer_ids.get(gen_id, ""), None)
            self._writer_ids[gen_id] = secrets.token_hex(8)
            self._numbers[gen_id] = 0
            data, fields = unavailable_event()
            end = _Append(gen_id, ERROR, data, fields, None, final=True)
            kept.append((end, self._arguments(end)))
        self.retry.gave_up += len(lost)
        log.error("event store refused writes for %.0f s: ending %d generations "
                  "`unavailable` once it accepts writes", self.retry.bound_s, len(lost))
        return kept

    def _arguments(self, item: _Append) -> Any:
        """The append, numbered once (a resend must carry the same writer id
        and number): on a single Redis as (argument count, RESP bytes) of the
        batched script's compact form, on a Cluster that form's list."""
        gen_id = item.gen_id
        writer_id = self._writer_ids.get(gen_id)
        if writer_id is None:
            writer_id = self._writer_ids[gen_id] = secrets.token_hex(8)
        number = self._numbers[gen_id] = self._numbers.get(gen_id, 0) + 1
        data = item.data
        if self._single and item.event == DELTA and item.fields is None \
                and type(data) is dict and len(data) == 1 and type(data.get("text")) is str:
            prefix = self._prefixes.get(writer_id)
            if prefix is None:
                prefix = self._prefixes[writer_id] = delta_prefix(gen_id, writer_id)
            return DELTA_ARGC, encode_delta(prefix, number, data["text"])
        args = self.log.batch_arguments(gen_id, item.event, data, item.fields,
                                        (writer_id, number))
        return (len(args), encode_arguments(args)) if self._single else args

    def _pack_many(self, group: list[tuple[int, bytes]]) -> bytes:
        """One EVALSHA of the batched append script for `group`'s events
        (declaring no keys: it builds them from the ids, appendscript.py)."""
        log = self.log
        return pack_call(("EVALSHA", log.many_script.sha, 0, *log.batch_constants), group)

    def _send_cluster(self, arguments: list[list[Any]]) -> list[Any]:
        """All appends through a Cluster pipeline (routed by slot; EVAL, as
        redis-py refuses EVALSHA there). Safe to resend whole: appends dedupe."""
        pipe = self.log.client.pipeline(transaction=False)
        for compact in arguments:
            keys, args = self.log.expand_batch_arguments(compact)
            pipe.execute_command("EVAL", self.log.script.script, len(keys), *keys, *args)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies

    def _send(self, commands: list[bytes], sizes: list[int], results: list[Any]) -> None:
        """Send `commands` on one connection; extend `results` with one answer per
        event, group by group as read (a failed group answers its error for each)."""
        pool = self.log.client.connection_pool
        # The writer keeps one connection between flushes: checking one out
        # of the pool costs a lock and a readiness poll per flush. Every
        # flush reads all its replies, so the connection is clean when kept.
        conn, self._conn = self._conn, None
        if conn is None:
            conn = pool.get_connection()
        try:
            replies = exchange(conn, b"".join(commands), len(commands))
        except BaseException:
            pool.release(conn)
            raise
        self._conn = conn
        for reply, size in zip(replies, sizes, strict=True):
            if _noscript(reply):
                # Redis lost its script cache (restart, SCRIPT FLUSH): load,
                # resend from here. All groups after fail alike, so each log
                # keeps its order.
                self.log.client.script_load(self.log.many_script.script)
                return
            results.extend(reply if isinstance(reply, list) else [reply] * size)


def _noscript(reply: Any) -> bool:
    return isinstance(reply, redis.exceptions.NoScriptError)


def merge_deltas(batch: list[_Append]) -> list[_Append]:
    """Merge each generation's runs of consecutive deltas (nobody waits on a delta).

    Only deltas with nothing of the same generation between them are joined,
    so every log keeps its order; other generations' items may sit between.
    """
    merged: list[_Append] = []
    open_delta: dict[str, int] = {}  # gen -> index in `merged` of its trailing delta
    for item in batch:
        if item.event != DELTA or item.done is not None or not isinstance(item.data, dict):
            open_delta.pop(item.gen_id, None)
            merged.append(item)
            continue
        index = open_delta.get(item.gen_id)
        if index is None:
            open_delta[item.gen_id] = len(merged)
            merged.append(item)
            continue
        head = merged[index]
        fields = {**(head.fields or {}), **(item.fields or {})} or None
        merged[index] = _Append(item.gen_id, DELTA, {"text": head.data["text"] + item.data["text"]},
                                fields, None)
    return merged
