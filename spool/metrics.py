"""Metrics collected through Redis, so every web process shows the whole system.

Each process (web or worker) records into a process-local `Recorder`; a
flusher thread (a greenlet under gevent) adds the deltas to one Redis hash
with HINCRBYFLOAT every `SPOOL_METRICS_FLUSH_S`, and writes its gauges as
one snapshot per process. `/metrics` on any web process reads both back
and renders them with prometheus-client.

Why Redis rather than scraping every process: on Heroku-style platforms a
scrape through the router lands on a random web dyno and worker dynos take
no HTTP at all. Counters held in Redis are cluster-wide and survive
process restarts, so whichever dyno answers, the numbers are the same and
monotonic; prometheus-client's multiprocess mode is not needed because no
metric lives in process memory for longer than one flush interval.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from spool.keys import Keys

log = logging.getLogger("spool.metrics")

SEP = "|"
GAUGE_STALE_FLOOR_S = 15.0  # a snapshot older than max(this, 3 flushes) is a dead process
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
INTER_TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0)


GAPS_PER_HANDOFF = 64  # inter-token gaps a generation counts before handing them over
METRICS_TTL_S = 7 * 86400  # the shared hashes outlive a week without any process

@dataclass(frozen=True)
class Spec:
    """One metric family: name, type, help, label names, histogram buckets."""

    name: str
    kind: str  # counter | histogram | gauge
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


TTFT = Spec("spool_ttft_seconds", "histogram",
            "Time from a worker starting a generation to its first token.",
            ("provider",), TTFT_BUCKETS)
INTER_TOKEN = Spec("spool_inter_token_seconds", "histogram",
                   "Time between consecutive pieces of text from the provider.",
                   ("provider",), INTER_TOKEN_BUCKETS)
QUEUE_WAIT = Spec("spool_queue_wait_seconds", "histogram",
                  "Time from creation to a worker starting the generation.",
                  ("queue",), QUEUE_WAIT_BUCKETS)
GENERATIONS = Spec("spool_generations_total", "counter",
                   "Finished generations by provider, outcome and finish reason.",
                   ("provider", "outcome", "finish_reason"))
PROVIDER_ERRORS = Spec("spool_provider_errors_total", "counter",
                       "Generations ended by a provider error, by error type.",
                       ("provider", "type"))
PROVIDER_RETRIES = Spec("spool_provider_retries_total", "counter",
                        "Provider retries and fallbacks before the first token.",
                        ("provider",))
REDIS_ERRORS = Spec("spool_redis_errors_total", "counter",
                    "Redis commands that failed (counted locally, added once Redis is back).",
                    ("error",))
ROUND_TRIPS = Spec("spool_redis_round_trips_total", "counter",
                   "Round trips to Redis (a command alone or a pipeline), by process kind "
                   "and purpose (append: the worker's event writes).", ("kind", "purpose"))
STREAMS = Spec("spool_sse_streams_total", "counter", "SSE responses opened.")
STREAMS_DIRECT = Spec("spool_sse_streams_direct_total", "counter",
                      "SSE responses whose live events the hub wrote to the socket itself.")
SSE_READERS = Spec("spool_sse_readers", "gauge", "SSE readers attached, over all web processes.")
SLOTS_IN_USE = Spec("spool_worker_slots_in_use", "gauge",
                    "Generations running, over all worker processes.")
SLOTS = Spec("spool_worker_slots", "gauge", "Generation slots, over all worker processes.")
RUNNING = Spec("spool_generations_running", "gauge",
               "Generations running by queue, over all worker processes.", ("queue",))
QUEUED = Spec("spool_generations_queued", "gauge", "Jobs waiting in each RQ queue.", ("queue",))
PROCESSES = Spec("spool_processes", "gauge", "Live processes reporting metrics, by kind.",
                 ("kind",))
REDIS_UP = Spec("spool_redis_up", "gauge", "1 when this scrape could read Redis.")

FLUSHED = (TTFT, INTER_TOKEN, QUEUE_WAIT, GENERATIONS, PROVIDER_ERRORS, PROVIDER_RETRIES,
           REDIS_ERRORS, ROUND_TRIPS, STREAMS, STREAMS_DIRECT)
SNAPSHOT_GAUGES = (SSE_READERS, SLOTS_IN_USE, SLOTS, RUNNING)


def series(spec: Spec, values: Iterable[str], suffix: str = "") -> str:
    """The Redis hash field of one series (`name|["label values"]|suffix`)."""
    return SEP.join((spec.name, orjson.dumps(list(values)).decode(), suffix))


@functools.lru_cache(maxsize=4096)
def _histogram_fields(name: str, labels: tuple[str, ...], buckets: int) -> tuple[str, ...]:
    """Per bucket, then sum and count: the fields one observation touches.

    Cached: the runner observes every text piece, so building these names
    (a JSON dump each) per token cost more than the observation itself.
    """
    head = SEP.join((name, orjson.dumps(list(labels)).decode(), ""))
    return (*(f"{head}b{i}" for i in range(buckets + 1)), head + "sum", head + "count")


def parse_series(name: str) -> tuple[str, tuple[str, ...], str]:
    """Inverse of `series`."""
    metric, rest = name.split(SEP, 1)
    labels, _, suffix = rest.rpartition(SEP)
    return metric, tuple(orjson.loads(labels)), suffix


class Recorder:
    """Process-local deltas and gauges, handed to the flusher."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deltas: defaultdict[str, float] = defaultdict(float)

    def inc(self, spec: Spec, *labels: str, amount: float = 1.0) -> None:
        """Add to a counter."""
        with self._lock:
            self._deltas[series(spec, labels)] += amount

    def observe(self, spec: Spec, value: float, *labels: str) -> None:
        """Record one histogram observation (bucket counts are per bucket, not cumulative)."""
        index = bisect.bisect_left(spec.buckets, value)  # first bound >= value
        fields = _histogram_fields(spec.name, labels, len(spec.buckets))
        with self._lock:
            self._deltas[fields[index]] += 1
            self._deltas[fields[-2]] += value
            self._deltas[fields[-1]] += 1

    def observe_many(self, spec: Spec, counts: list[int], total: float, count: int,
                     *labels: str) -> None:
        """Record many observations at once: per-bucket counts, their sum and number."""
        fields = _histogram_fields(spec.name, labels, len(spec.buckets))
        with self._lock:
            for index, number in enumerate(counts):
                if number:
                    self._deltas[fields[index]] += number
            self._deltas[fields[-2]] += total
            self._deltas[fields[-1]] += count

    def take(self) -> dict[str, float]:
        """Everything recorded since the last take."""
        with self._lock:
            taken, self._deltas = dict(self._deltas), defaultdict(float)
        return taken

    def give_back(self, deltas: Mapping[str, float]) -> None:
        """Return deltas a failed flush could not write, to try again later."""
        with self._lock:
            for name, value in deltas.items():
                self._deltas[name] += value


RECORDER = Recorder()  # the process's recorder; holds no connection


@dataclass
class InFlight:
    """Generations this process runs now, by queue (the worker's slot gauge)."""

    by_queue: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    def begin(self, queue: str) -> None:
        """A generation started."""
        self.by_queue[queue] += 1

    def end(self, queue: str) -> None:
        """A generation finished."""
        self.by_queue[queue] -= 1

    def gauges(self, slots: int) -> dict[str, float]:
        """The worker's gauge snapshot."""
        values = {series(RUNNING, (q,)): float(n) for q, n in self.by_queue.items()}
        values[series(SLOTS_IN_USE, ())] = float(sum(self.by_queue.values()))
        values[series(SLOTS, ())] = float(slots)
        return values


IN_FLIGHT = InFlight()

GaugeFn = Callable[[], dict[str, float]]


class MetricsStore:
    """This process's view of the metrics in Redis."""

    def __init__(self, client: Any, keys: Keys, process_name: str, kind: str,
                 interval_s: float) -> None:
        self.client = client
        self.keys = keys
        self.process_name = process_name
        self.kind = kind
        self.interval_s = interval_s

    @property
    def process_id(self) -> str:
        """Name plus pid, read when used: a pre-forked copy reports as itself."""
        return f"{self.process_name}.{os.getpid()}"

    def flush(self, recorder: Recorder, gauges: dict[str, float]) -> None:
        """Add recorded deltas to the shared counters; publish this process's gauges."""
        from spool.connection import take_round_trips  # it imports this module

        deltas = recorder.take()
        for purpose, count in take_round_trips().items():
            name = series(ROUND_TRIPS, (self.kind, purpose))
            deltas[name] = deltas.get(name, 0.0) + count
        snapshot = {"kind": self.kind, "ts": time.time(), "stale_after": self.stale_after_s,
                    "values": gauges}
        try:
            pipe = self.client.pipeline(transaction=False)
            for name, value in deltas.items():
                pipe.hincrbyfloat(self.keys.metric_counters(), name, value)
            pipe.hset(self.keys.metric_gauges(), self.process_id, orjson.dumps(snapshot))
            # Every flush renews them: they go only after a week with no process.
            pipe.expire(self.keys.metric_counters(), METRICS_TTL_S)
            pipe.expire(self.keys.metric_gauges(), METRICS_TTL_S)
            pipe.execute()
        except redis.RedisError:
            recorder.give_back(deltas)
            raise

    @property
    def stale_after_s(self) -> float:
        """How old this process's snapshot may get before readers ignore it."""
        return max(GAUGE_STALE_FLOOR_S, 3 * self.interval_s)

    def remove(self) -> None:
        """Withdraw this process's gauges (clean shutdown)."""
        with contextlib.suppress(redis.RedisError):
            self.client.hdel(self.keys.metric_gauges(), self.process_id)

    def read(self) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Shared counters and the live processes' gauge snapshots."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.metric_counters())
        pipe.hgetall(self.keys.metric_gauges())
        counters, raw_gauges = pipe.execute()
        now = time.time()
        live, dead = [], []
        for process_id, raw in raw_gauges.items():
            snap = orjson.loads(raw)
            if now - float(snap["ts"]) <= float(snap.get("stale_after", GAUGE_STALE_FLOOR_S)):
                live.append(snap)
            else:
                dead.append(process_id)
        if dead:
            self.client.hdel(self.keys.metric_gauges(), *dead)
        return {k: float(v) for k, v in counters.items()}, live


class Flusher:
    """A daemon thread (a greenlet under gevent) that flushes periodically."""

    def __init__(self, store: MetricsStore, gauges: GaugeFn,
                 recorder: Recorder = RECORDER) -> None:
        self.store = store
        self.gauges = gauges
        self.recorder = recorder
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start flushing (idempotent; never at import, so a pre-fork server is safe)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="spool-metrics",
                                                daemon=True)
                self._thread.start()

    def flush(self) -> None:
        """Flush now; Redis errors are logged and retried on the next tick."""
        try:
            self.store.flush(self.recorder, self.gauges())
        except redis.RedisError as exc:
            log.warning("metrics flush failed: %s", type(exc).__name__)

    def _run(self) -> None:
        while True:
            time.sleep(self.store.interval_s)
            self.flush()


def worker_flusher(client: Any, keys: Keys, worker_id: str, interval_s: float,
                   slots: int) -> Flusher:
    """The worker process's flusher: its deltas plus its slot gauges."""
    store = MetricsStore(client, keys, f"worker.{worker_id}", "worker", interval_s)
    return Flusher(store, lambda: IN_FLIGHT.gauges(slots))


class Observation:
    """One generation's observation points, as the runner sees them."""

    def __init__(self, provider: str, queue: str, queue_wait_s: float,
                 recorder: Recorder = RECORDER, in_flight: InFlight = IN_FLIGHT) -> None:
        self.provider = provider
        self.queue = queue
        self.recorder = recorder
        self.in_flight = in_flight
        self._started = time.monotonic()
        self._last_piece: float | None = None
        # Inter-token gaps are counted here and handed to the recorder in
        # bulk (every GAPS_PER_HANDOFF pieces, and at the end): one lock and
        # three dict updates per token cost more than the token's own work.
        self._gaps = [0] * (len(INTER_TOKEN.buckets) + 1)
        self._gaps_sum = 0.0
        self._gaps_count = 0
        self._ended = False
        self._closed = False
        in_flight.begin(queue)
        recorder.observe(QUEUE_WAIT, max(queue_wait_s, 0.0), queue)

    def text_piece(self) -> None:
        """A piece of text arrived from the provider."""
        now = time.monotonic()
        if self._last_piece is None:
            self.recorder.observe(TTFT, now - self._started, self.provider)
        else:
            gap = now - self._last_piece
            self._gaps[bisect.bisect_left(INTER_TOKEN.buckets, gap)] += 1
            self._gaps_sum += gap
            self._gaps_count += 1
            if self._gaps_count >= GAPS_PER_HANDOFF:
                self._hand_off_gaps()
        self._last_piece = now

    def _hand_off_gaps(self) -> None:
        if self._gaps_count:
            self.recorder.observe_many(INTER_TOKEN, self._gaps, self._gaps_sum,
                                       self._gaps_count, self.provider)
            self._gaps = [0] * len(self._gaps)
            self._gaps_sum = 0.0
            self._gaps_count = 0

    def retry(self) -> None:
        """The provider layer retried or fell back before the first token."""
        self.recorder.inc(PROVIDER_RETRIES, self.provider)

    def end(self, outcome: str, finish_reason: str, error_type: str | None = None) -> None:
        """The generation's terminal event was written (counted once)."""
        self._hand_off_gaps()
        if self._ended:
            return
        self._ended = True
        self.recorder.inc(GENERATIONS, self.provider, outcome, finish_reason)
        if error_type is not None:
            self.recorder.inc(PROVIDER_ERRORS, self.provider, error_type)

    def close(self) -> None:
        """The runner let go of its slot."""
        self._hand_off_gaps()
        if not self._closed:
            self._closed = True
            self.in_flight.end(self.queue)
