"""Scale-out on one Redis: two web and two worker processes, readers moving between webs.

Each worker runs one generation at a time (`--slots 1`), so concurrent work
must spread over both; a reader that hops from one web process to the other
mid-stream (as after a dyno restart or a load balancer's choice) receives
every event exactly once, in order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Api
from tests.harness import Stack, wait_until
from tests.integration.test_ops import scrape, value
from tests.sseclient import Event, read_stream

TEXT = "".join(f"word{i} " for i in range(120)) + "end — ✓ 🙂"
SLOW = {"tokens_per_second": 60, "ttft_ms": 0}


@pytest.fixture(scope="module")
def two_by_two(redis_server: Any) -> Iterator[Stack]:
    stack = Stack(redis_server.url, {"SPOOL_METRICS_FLUSH_S": "0.2"})
    for _ in range(2):
        stack.start_web()
    for _ in range(2):
        stack.start_worker(["--slots", "1"])
    yield stack
    stack.close()


def _deltas(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "delta")


def test_reader_moves_between_web_processes_mid_stream(two_by_two: Stack) -> None:
    web0, web1 = Api(two_by_two, web=0), Api(two_by_two, web=1)
    created = web0.create(TEXT, mock=SLOW)
    received: list[Event] = []
    hops = 0
    while not received or received[-1].event not in {"done", "error", "cancelled"}:
        api = (web0, web1)[hops % 2]
        headers = {"Last-Event-ID": str(received[-1].id)} if received else {}
        part = api.stream(created, headers=headers, max_events=12)
        assert part.status == 200
        assert part.events, "a resumed stream must make progress"
        received.extend(part.events)
        hops += 1
    assert hops >= 4, "the generation ended before the reader could hop"
    assert [e.id for e in received] == list(range(1, len(received) + 1))
    assert received[-1].event == "done"
    assert _deltas(received) == TEXT
    assert web1.generation(created["id"])["text"] == TEXT


def test_concurrent_work_spreads_over_both_workers(two_by_two: Stack) -> None:
    apis = [Api(two_by_two, web=0), Api(two_by_two, web=1)]
    created = [apis[i % 2].create(f"job {i} " * 20, mock={"tokens_per_second": 100})
               for i in range(6)]
    results: dict[str, list[Event]] = {}

    def read(i: int, item: dict[str, Any]) -> None:
        results[item["id"]] = apis[(i + 1) % 2].stream(item).events

    threads = [threading.Thread(target=read, args=(i, c)) for i, c in enumerate(created)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    workers = set()
    for i, item in enumerate(created):
        events = results[item["id"]]
        assert events[-1].event == "done"
        assert _deltas(events) == f"job {i} " * 20
        record = two_by_two_record(two_by_two, item["id"])
        workers.add(record["worker"])
    assert len(workers) == 2, f"all work ran on {workers}"


def two_by_two_record(stack: Stack, gen_id: str) -> dict[str, str]:
    import redis

    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        record: dict[str, str] = client.hgetall(f"{stack.namespace}:gen:{{{gen_id}}}:rec")
        return record
    finally:
        client.close()


def test_cancel_through_one_web_reaches_a_reader_on_the_other(two_by_two: Stack) -> None:
    web0, web1 = Api(two_by_two, web=0), Api(two_by_two, web=1)
    created = web0.create(TEXT * 4, mock={"tokens_per_second": 30, "ttft_ms": 0})
    events: list[Event] = []
    reader = threading.Thread(target=lambda: events.extend(
        read_stream(web0.url(created["stream_url"]), {}).events))
    reader.start()
    wait_until(lambda: any(e.event == "delta" for e in events) or
               web1.generation(created["id"])["text"], 15, 0.05, "first delta")
    assert web1.post(f"/v1/generations/{created['id']}/cancel").status_code == 202
    reader.join(15)
    assert events[-1].event == "cancelled"
    assert [e.id for e in events] == list(range(1, len(events) + 1))


def test_every_web_process_reports_the_whole_deployment(two_by_two: Stack) -> None:
    url0, url1 = two_by_two.url("/metrics", 0), two_by_two.url("/metrics", 1)

    def agreed() -> bool:
        a, b = scrape(url0), scrape(url1)
        key = {"provider": "mock", "outcome": "completed", "finish_reason": "stop"}
        done = value(a, "spool_generations_total", **key)
        return (done >= 7 and done == value(b, "spool_generations_total", **key)
                and value(a, "spool_processes", kind="web") == 2
                and value(b, "spool_processes", kind="worker") == 2)

    wait_until(agreed, 15, 0.2, "both webs to report the same totals")
