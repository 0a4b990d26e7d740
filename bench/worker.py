"""Worker benchmark: N mock generations started together on ONE worker process.

Each generation is 100 tokens at 20 tokens/s (the mock's default 300 ms
first-token delay), so one alone takes ~5.3 s. Real processes: a private
redis-server, one gunicorn web process, one `python -m worker --slots N`.
The headline is what users do: N HTTP clients each `POST /v1/generations`
at once and read their stream to the end (`bench/jobpath_client.py`):
makespan (first POST sent to last stream ended) over one generation alone
through the same path, and queue wait p99 (`metrics.queue_ms` of each
`done`). The direct mode stays as extra columns (`direct_*`): the N records
are written with the core's own `Generations.create`, then all N jobs go
onto the queue in one pipeline at t0, bypassing the web. Reported per N:

- ratio (HTTP), and direct_ratio: t0 to the last `finished` over one
  generation's own time (enqueued to finished, run alone first, same path);
- queue-wait percentiles (direct: t0 to each generation's `started`);
- worker CPU seconds per 1,000 tokens (psutil, user + system);
- worker RSS per in-flight generation (peak RSS while all run, minus idle);
- exact: how many answers matched their text exactly.

Run: `python -m bench.worker` (add `--quick` for N = 100 only).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import redis
from rq import Queue

from spool.connection import connect, connect_rq
from spool.generations import Generations
from spool.ids import new_generation_id
from spool.keys import Keys
from spool.log import EventLog, Retention
from spool.queue import FAILURE_TTL_S, JOB_FUNC, RESULT_TTL_S
from spool.schemas import parse_generation_request
from spool.settings import Settings
from tests.harness import RedisServer, Stack, wait_until

TOKENS = 100
TOKENS_PER_SECOND = 20
TOKEN_CHARS = 4  # the mock's code points per token
SIZES = (100, 500, 1000)
QUICK_SIZES = (100,)
CREATE_THREADS = 8
JOB_TIMEOUT_S = 900
SAMPLE_S = 0.2
ENV = {"SPOOL_MAX_ACTIVE": "100000", "SPOOL_RATE_LIMIT": "1000000", "SPOOL_WEB_GRACE_S": "2"}


def answer(i: int) -> str:
    """A distinct text of exactly TOKENS tokens."""
    head = f"answer {i:05d}: "
    filler = "spool keeps every token in order. " * 20
    return (head + filler)[: TOKENS * TOKEN_CHARS]


class Creator:
    """Writes generation records and enqueues their jobs, as the web does."""

    def __init__(self, redis_url: str, namespace: str) -> None:
        self.client = connect(redis_url)
        self.rq = connect_rq(redis_url)
        self.keys = Keys(namespace)
        settings = Settings()
        retention = Retention.from_settings(settings.retention_s, JOB_TIMEOUT_S,
                                            settings.tombstone_s)
        self.generations = Generations(self.client, self.keys,
                                       EventLog(self.client, self.keys, retention))
        self.queue = Queue(self.keys.queue_name("interactive"), connection=self.rq)

    def record(self, i: int) -> str:
        """Write generation i's record (status queued); not yet on the queue."""
        request = parse_generation_request({
            "messages": [{"role": "user", "content": "bench"}],
            "mock": {"text": answer(i), "tokens_per_second": TOKENS_PER_SECOND},
        }, max_tokens_limit=Settings().max_tokens_limit)
        gen_id = new_generation_id()
        self.generations.create(gen_id, "bench", request, provider="mock", model="mock-1",
                                abandon_after_s=None)
        return gen_id

    def enqueue(self, ids: list[str]) -> float:
        """Put all jobs on the queue in one pipeline; returns t0 (epoch s)."""
        jobs = [Queue.prepare_data(JOB_FUNC, args=(gen_id,), job_id=gen_id,
                                   timeout=JOB_TIMEOUT_S, result_ttl=RESULT_TTL_S,
                                   failure_ttl=FAILURE_TTL_S, description=f"generation {gen_id}")
                for gen_id in ids]
        t0 = time.time()
        self.queue.enqueue_many(jobs)
        return t0


def records(client: redis.Redis, keys: Keys, ids: list[str]) -> list[dict[str, str]]:
    pipe = client.pipeline(transaction=False)
    for gen_id in ids:
        pipe.hgetall(keys.record(gen_id))
    found: list[dict[str, str]] = pipe.execute()
    return found


def wait_all(client: redis.Redis, keys: Keys, ids: list[str],
             timeout: float) -> list[dict[str, str]]:
    def ended() -> list[dict[str, str]] | None:
        recs = records(client, keys, ids)
        return recs if all("ended" in rec for rec in recs) else None

    found: list[dict[str, str]] = wait_until(ended, timeout=timeout, interval=0.1,
                                             what="generations to end")
    return found


class RssSampler(threading.Thread):
    """Samples a process's RSS until stopped; keeps the peak."""

    def __init__(self, proc: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.peak = proc.memory_info().rss
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_S):
            self.peak = max(self.peak, self.proc.memory_info().rss)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(server: RedisServer, n: int) -> dict[str, Any]:
    """One row: a fresh stack, one generation alone, then N together."""
    stack = Stack(server.url, ENV)
    try:
        stack.start_web()
        worker = stack.start_worker(["--slots", str(max(n, 1))])
        client = redis.Redis.from_url(server.url, decode_responses=True)
        keys = Keys(stack.namespace)
        creator = Creator(server.url, stack.namespace)
        proc = psutil.Process(worker.proc.pid)

        single_id = creator.record(0)
        t_single = creator.enqueue([single_id])
        (single,) = wait_all(client, keys, [single_id], timeout=60)
        single_s = int(single["finished_ms"]) / 1000 - t_single
        with ThreadPoolExecutor(CREATE_THREADS) as pool:
            ids = list(pool.map(creator.record, range(1, n + 1)))
        time.sleep(1.0)  # let the allocator settle before the idle baseline
        rss_idle = proc.memory_info().rss
        cpu_before = sum(proc.cpu_times()[:2])
        sampler = RssSampler(proc)
        sampler.start()

        t0 = creator.enqueue(ids)
        recs = wait_all(client, keys, ids, timeout=300)
        sampler.stopped.set()
        sampler.join()
        cpu_s = sum(proc.cpu_times()[:2]) - cpu_before
        makespan = max(int(rec["finished_ms"]) for rec in recs) / 1000 - t0
        texts = client.mget([keys.text(g) for g in ids])
        exact = sum(text == answer(i) for i, text in enumerate(texts, start=1))
        waits = [float(rec["started_ms"]) - t0 * 1000 for rec in recs]
        client.close()
        http = measure_http(stack.webs[0].port, n)
        return {
            "N": n,
            **http,
            "direct_single_s": round(single_s, 2),
            "direct_makespan_s": round(makespan, 2),
            "direct_ratio": round(makespan / single_s, 2),
            "direct_queue_p50_ms": round(statistics.median(waits)),
            "direct_queue_p90_ms": round(percentile(waits, 0.90)),
            "direct_queue_p99_ms": round(percentile(waits, 0.99)),
            "cpu_s_per_1k_tokens": round(cpu_s / (n * TOKENS / 1000), 3),
            "rss_kb_per_gen": round((sampler.peak - rss_idle) / 1024 / n, 1),
            "exact": f"{exact}/{n}",
            "completed": sum(rec.get("status") == "completed" for rec in recs),
        }
    finally:
        stack.close()


def measure_http(port: int, n: int) -> dict[str, Any]:
    """N clients posting at once through the public API, and one alone first."""
    from bench.jobpath_probe import run_client

    body = {"messages": [{"role": "user", "content": "bench"}],
            "mock": {"text": answer(0), "tokens_per_second": TOKENS_PER_SECOND}}

    def burst(count: int) -> dict[str, Any]:
        streams = run_client({"mode": "burst", "port": port, "n": count, "body": body,
                              "timeout_s": 300})["streams"]
        waits = [s["queue_ms"] for s in streams if s.get("queue_ms") is not None]
        return {"makespan": max(s["end"] for s in streams) - min(s["t0"] for s in streams),
                "p99": percentile(waits, 0.99) if waits else None,
                "errors": sum(1 for s in streams if s["error"])}

    single, together = burst(1), burst(n)
    return {"ratio": round(together["makespan"] / single["makespan"], 2),
            "single_s": round(single["makespan"], 2),
            "makespan_s": round(together["makespan"], 2),
            "queue_p99_ms": together["p99"], "http_errors": together["errors"]}


def run(quick: bool) -> dict[str, Any]:
    """The benchmark as a table: one row per N."""
    server = RedisServer()
    server.start()
    try:
        rows = [measure(server, n) for n in (QUICK_SIZES if quick else SIZES)]
    finally:
        server.stop()
    return {"name": "worker", "title": "N concurrent generations on one worker process",
            "columns": list(rows[0]), "rows": rows}


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")))
    args = parser.parse_args()
    global SIZES
    if args.sizes:
        SIZES = args.sizes
    result = run(args.quick)
    columns = result["columns"]
    print(" | ".join(columns))
    for row in result["rows"]:
        print(" | ".join(str(row[c]) for c in columns))


try:  # registered with `python -m bench`; also runnable standalone
    from bench.registry import Context, Row, scenario
except ImportError:
    pass
else:

    @scenario("worker", "concurrency")
    def _registered(ctx: Context) -> list[Row]:
        """N mock generations (20 tok/s, 100 tokens) started together on one worker process."""
        rows: list[Row] = [{"scenario": "worker", "system": "spool", "n": row["N"], **row}
                           for row in run(ctx.quick)["rows"]]
        return rows


if __name__ == "__main__":
    main()
