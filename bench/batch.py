"""Interactive queue wait with and without a 1,000-row batch running.

`python -m bench.batch [--quick]`. Starts a private Redis, one gunicorn web
process and one worker (`python -m worker`, whatever worker the checkout
has), then sends interactive generations at a steady rate twice: on an idle
system, and while a 1,000-row batch is running. Queue wait is the
generation's own `metrics.queue_ms` (worker start minus creation). The
batch is cancelled at the end, which also measures how long a cancel of a
busy batch takes to settle.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import requests

from tests.harness import RedisServer, Stack, wait_until

BATCH_ROWS = 1000
INTERACTIVE_RATE_PER_S = 10  # well under one plain RQ worker's capacity
INTERACTIVE_COUNT = {True: 60, False: 200}  # quick, full
INTERACTIVE_MOCK = {"tokens_per_second": 200, "ttft_ms": 20, "text": "fine, thanks for asking"}
# Rows of 1.5-4.5 s (varied, like real answers), so the batch is still busy
# for the whole interactive run and rows do not all end in lockstep.
BATCH_TOKENS_PER_S = 20
BATCH_SENTENCE = "This is one sentence of a batch answer. "  # ~10 mock tokens
BATCH_TTFT_MS = 300
GOAL_P95_MS = 100


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def interactive_waits(session: requests.Session, base: str, count: int) -> list[float]:
    """Send `count` interactive generations at a steady rate; their queue waits (ms)."""
    ids = []
    started = time.monotonic()
    for i in range(count):
        delay = started + i / INTERACTIVE_RATE_PER_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        resp = session.post(f"{base}/v1/generations", json={
            "messages": [{"role": "user", "content": f"hello {i}"}], "mock": INTERACTIVE_MOCK})
        resp.raise_for_status()
        ids.append(resp.json()["id"])
    waits = []
    for gen_id in ids:
        record = wait_until(lambda g=gen_id: (r := session.get(
            f"{base}/v1/generations/{g}").json())["status"] == "completed" and r,
            120, 0.05, f"generation {gen_id}")
        waits.append(float(record["metrics"]["queue_ms"]))
    return waits


def summary(waits: list[float]) -> dict[str, Any]:
    """p50/p95/max of queue waits."""
    return {"n": len(waits), "p50_ms": statistics.median(waits),
            "p95_ms": _percentile(waits, 95), "max_ms": max(waits)}


def submit_batch(session: requests.Session, base: str) -> tuple[str, float]:
    """Submit the 1,000-row batch; (id, seconds the POST took)."""
    rows = [{"custom_id": f"row-{i}", "messages": [{"role": "user", "content": f"row {i}"}],
             "mock": {"tokens_per_second": BATCH_TOKENS_PER_S, "ttft_ms": BATCH_TTFT_MS,
                      "text": BATCH_SENTENCE * (4 + (i * 7) % 8)}}
            for i in range(BATCH_ROWS)]
    started = time.monotonic()
    resp = session.post(f"{base}/v1/batches", json={"requests": rows})
    resp.raise_for_status()
    return resp.json()["id"], time.monotonic() - started


def run(quick: bool) -> dict[str, Any]:
    """Run the scenario; a flat, table-able result."""
    count = INTERACTIVE_COUNT[quick]
    redis_server = RedisServer()
    redis_server.start()
    stack = Stack(redis_server.url, {"SPOOL_WEB_GRACE_S": "2", "SPOOL_RATE_LIMIT": "1000000",
                                     "SPOOL_MAX_ACTIVE": "100000"})
    try:
        stack.start_web()
        stack.start_worker()
        base, session = stack.base_url, requests.Session()
        idle = summary(interactive_waits(session, base, count))
        batch_id, submit_s = submit_batch(session, base)
        wait_until(lambda: session.get(f"{base}/v1/batches/{batch_id}").json()["status"]
                   == "in_progress", 30, 0.05, "the batch to start")
        busy = summary(interactive_waits(session, base, count))
        during = session.get(f"{base}/v1/batches/{batch_id}").json()
        cancel_started = time.monotonic()
        session.post(f"{base}/v1/batches/{batch_id}/cancel").raise_for_status()
        ended = wait_until(lambda: (b := session.get(f"{base}/v1/batches/{batch_id}").json())[
            "status"] == "cancelled" and b, 60, 0.02, "the cancel to settle")
        cancel_s = time.monotonic() - cancel_started
    finally:
        stack.close()
        redis_server.stop()
    return {
        "interactive_n": count,
        "idle_p50_ms": idle["p50_ms"], "idle_p95_ms": idle["p95_ms"], "idle_max_ms": idle["max_ms"],
        "batch_p50_ms": busy["p50_ms"], "batch_p95_ms": busy["p95_ms"],
        "batch_max_ms": busy["max_ms"],
        "goal_p95_ms": GOAL_P95_MS,
        "batch_rows": BATCH_ROWS, "batch_submit_s": round(submit_s, 3),
        "batch_rows_done_meanwhile": during["completed"] + during["failed"],
        "batch_cancelled_rows": ended["cancelled"], "cancel_settle_s": round(cancel_s, 3),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the result as a two-column table."""
    parser = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer interactive requests")
    result = run(parser.parse_args(argv).quick)
    width = max(map(len, result))
    for name, value in result.items():
        print(f"{name:<{width}}  {value}")
    return 0


try:  # registered with `python -m bench`; also runnable standalone
    from bench.registry import Context, Row, scenario
except ImportError:
    pass
else:

    @scenario("batch", "interactive_wait")
    def _registered(ctx: Context) -> list[Row]:
        """Interactive queue wait, idle and with a 1,000-row batch running."""
        return [{"scenario": "batch", "system": "spool", "n": BATCH_ROWS, **run(ctx.quick)}]


if __name__ == "__main__":
    raise SystemExit(main())
