"""Scale-out on one machine: throughput with 1/2/4 worker and 1/2 web processes.

`python -m bench.scaling [--quick]`, or `python -m bench --only scaling`.

- workers: N mock generations (as fast as the mock goes) are queued while
  RQ is suspended, then released at once to 1, 2 or 4 `python -m worker`
  processes; throughput is N over the window from the first start to the
  last finish, read from the generation records (worker-side clocks).
- webs: R full replays of finished generations (~300 events each) by C
  concurrent SSE readers spread over 1 or 2 gunicorn web processes;
  throughput is events delivered per second.

Scaling efficiency = throughput(n) / (n x throughput(1)). The load
generator runs on the same (2-core) machine, so efficiency falls once the
processes outnumber the cores; the numbers say where.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import redis
import requests
from rq.suspension import resume, suspend

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness import RedisServer, Stack, wait_until  # noqa: E402 - needs ROOT on the path

WORKER_COUNTS = (1, 2, 4)
WEB_COUNTS = (1, 2)
GEN_TEXT = "Spool streams every token into a durable log. " * 4  # ~50 mock pieces
REPLAY_TEXT = "".join(f"tok{i % 10} " for i in range(240))  # ~300 mock pieces
CREATE_THREADS = 8
CLIENT_PROCESSES = 2


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds used so far by these processes and their children."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for one in [proc, *proc.children(recursive=True)]:
                times = one.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _pids(stack: Stack, server: RedisServer) -> list[int]:
    procs = [p.proc.pid for p in [*stack.webs, *stack.workers]]
    return [*procs, *([server.proc.pid] if server.proc else [])]


def _create(base: str, text: str, mock: dict[str, Any] | None = None) -> str:
    body = {"messages": [{"role": "user", "content": "bench"}],
            "mock": {"text": text, "tokens_per_second": 0, "ttft_ms": 0, **(mock or {})}}
    resp = requests.post(f"{base}/v1/generations", json=body, timeout=30)
    resp.raise_for_status()
    return str(resp.json()["id"])


def _records(stack: Stack, ids: list[str]) -> list[dict[str, str]]:
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        pipe = client.pipeline(transaction=False)
        for gen_id in ids:
            pipe.hgetall(f"{stack.namespace}:gen:{{{gen_id}}}:rec")
        return list(pipe.execute())
    finally:
        client.close()


def _all_done(stack: Stack, ids: list[str]) -> list[dict[str, str]] | None:
    records = _records(stack, ids)
    return records if all("finished_ms" in r for r in records) else None


def steady_state(records: list[dict[str, str]]) -> tuple[int, float]:
    """Generations finished while every worker was busy, and that window's length.

    Workers wake from RQ's suspension up to a second apart and run out of
    work at different times; only the span in which all of them were
    working measures what n processes do together.
    """
    by_worker: dict[str, list[dict[str, str]]] = {}
    for record in records:
        by_worker.setdefault(record.get("worker", "?"), []).append(record)
    begin = max(min(int(r["started_ms"]) for r in rs) for rs in by_worker.values())
    end = min(max(int(r["finished_ms"]) for r in rs) for rs in by_worker.values())
    done = sum(begin < int(r["finished_ms"]) <= end for r in records)
    return done, max(end - begin, 0) / 1000.0


def measure_workers(server: RedisServer, workers: int, n: int) -> dict[str, Any]:
    """Generations per second with `workers` worker processes and one web."""
    redis_url = server.url
    stack = Stack(redis_url)
    try:
        stack.start_web()
        for _ in range(workers):
            stack.start_worker()
        rq_client = redis.Redis.from_url(redis_url)
        suspend(rq_client)  # queue everything first, then release all workers at once
        try:
            with ThreadPoolExecutor(CREATE_THREADS) as pool:
                ids = list(pool.map(lambda _: _create(stack.base_url, GEN_TEXT), range(n)))
        finally:
            cpu_before, began = _cpu_s(_pids(stack, server)), time.monotonic()
            resume(rq_client)
        records = wait_until(lambda: _all_done(stack, ids), 600, 0.2, "all generations")
        cores = (_cpu_s(_pids(stack, server)) - cpu_before) / (time.monotonic() - began)
        done_in_window, window_s = steady_state(records)
        failed = sum(r.get("status") != "completed" for r in records)
        return {"scenario": "workers", "system": "spool", "n": workers, "web": 1,
                "generations": n, "failed": failed, "window_s": round(window_s, 3),
                "gen_per_s": round(done_in_window / window_s, 2) if window_s > 0 else None,
                "cores_busy": round(cores, 2)}
    finally:
        stack.close()


def _replay(url: str) -> int:
    """Read one SSE stream to its end; returns the number of events."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}")
        resp = conn.getresponse()
        body = resp.read()
        return body.count(b"\nevent: ") + body.startswith(b"event: ")
    finally:
        conn.close()


def _chunks(items: list[str], parts: int) -> list[list[str]]:
    return [items[i::parts] for i in range(parts)]


def _replay_many(urls: list[str]) -> list[int]:
    """One reader: its streams, one after another."""
    return [_replay(url) for url in urls]


def measure_webs(server: RedisServer, webs: int, readers: int, reads: int) -> dict[str, Any]:
    """SSE events per second delivered by `webs` web processes to concurrent readers."""
    stack = Stack(server.url)
    try:
        for _ in range(webs):
            stack.start_web()
        stack.start_worker()
        gens = []
        for i in range(readers):
            body = {"messages": [{"role": "user", "content": "bench"}],
                    "mock": {"text": REPLAY_TEXT + str(i), "tokens_per_second": 0}}
            resp = requests.post(f"{stack.base_url}/v1/generations", json=body, timeout=30)
            gens.append(resp.json())
        wait_until(lambda: _all_done(stack, [g["id"] for g in gens]), 300, 0.2, "replay logs")
        urls = [stack.url(g["stream_url"], i % webs) for i, g in enumerate(gens)]
        plan = [urls[(i + k) % len(urls)] for k in range(reads // readers)
                for i in range(readers)]
        # Client processes, so the load generator's GIL is not the limit.
        with ProcessPoolExecutor(CLIENT_PROCESSES) as pool:
            list(pool.map(_replay, urls[:CLIENT_PROCESSES]))  # warm the pool up
            cpu_before, began = _cpu_s(_pids(stack, server)), time.monotonic()
            per_reader = list(pool.map(_replay_many, _chunks(plan, readers)))
            elapsed = time.monotonic() - began
        counts = [c for chunk in per_reader for c in chunk]
        cores = (_cpu_s(_pids(stack, server)) - cpu_before) / elapsed
        events = sum(counts)
        return {"scenario": "webs", "system": "spool", "n": webs, "workers": 1,
                "readers": readers, "streams": len(counts), "events": events,
                "window_s": round(elapsed, 3), "events_per_s": round(events / elapsed, 1),
                "cores_busy": round(cores, 2)}
    finally:
        stack.close()


def with_efficiency(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Add `efficiency` = throughput(n) / (n x throughput(1)) to each row."""
    base = next(r[key] for r in rows if r["n"] == 1)
    for row in rows:
        row["speedup"] = round(row[key] / base, 2) if base else None
        row["efficiency"] = round(row[key] / (row["n"] * base), 2) if base else None
    return rows


def run(quick: bool) -> dict[str, Any]:
    """Both scenarios on a private redis-server; a table-able result."""
    n = 150 if quick else 600
    readers, reads = (20, 60) if quick else (40, 400)
    server = RedisServer()
    server.start()
    try:
        workers = with_efficiency(
            [measure_workers(server, count, n) for count in WORKER_COUNTS], "gen_per_s")
        webs = with_efficiency(
            [measure_webs(server, count, readers, reads) for count in WEB_COUNTS],
            "events_per_s")
    finally:
        server.stop()
    return {"quick": quick, "rows": [*workers, *webs]}


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"scenario  n  throughput        speedup  efficiency  server cores busy "
             f"(of {psutil.cpu_count()})"]
    for row in rows:
        rate = (f"{row['gen_per_s']} gen/s" if row["scenario"] == "workers"
                else f"{row['events_per_s']} events/s")
        lines.append(f"{row['scenario']:<9} {row['n']:<2} {rate:<17} {row['speedup']:<8} "
                     f"{row['efficiency']:<11} {row['cores_busy']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run standalone and print a table plus the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small loads, for a smoke run")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print(_table(result["rows"]))
    print(json.dumps(result, indent=2))
    return 0


try:  # the registry arrives with the bench framework (issue 5)
    from bench.registry import Context, Row, scenario
except ImportError:  # standalone: `python -m bench.scaling`
    pass
else:

    @scenario("scaling", "processes")
    def processes(ctx: Context) -> list[Row]:
        """Throughput with 1/2/4 worker and 1/2 web processes, as scaling efficiency."""
        rows: list[Row] = run(ctx.quick)["rows"]
        return rows


if __name__ == "__main__":
    raise SystemExit(main())
