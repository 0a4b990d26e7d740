"""Redis refusing writes, pausing, sleeping, restarting: no process dies, no log
is left without its end or with a hole, and new work runs without restarts.

Real redis-server (private, with an AOF), real gunicorn and worker; the cases
and the checks are in tests/faults.py (`python -m tests.fault_loop` reruns
them ten times each).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.faults import CASES, Report, fault_server, fault_stack, run_case
from tests.harness import RedisServer, Stack


@pytest.fixture(scope="module")
def fault_world() -> Iterator[tuple[RedisServer, Stack]]:
    server = fault_server()
    stack = fault_stack(server)
    yield server, stack
    stack.close()
    server.stop()


def _assert_clean(report: Report) -> None:
    assert report.ok(), report
    assert report.completed + report.unavailable == report.generations, report
    assert report.other_end == 0, report


@pytest.mark.parametrize("name", ["oom_short", "readonly_short", "client_pause",
                                  "debug_sleep", "restart_aof"])
def test_short_fault_loses_nothing(fault_world: tuple[RedisServer, Stack], name: str) -> None:
    server, stack = fault_world
    report = run_case(stack, server, CASES[name])
    _assert_clean(report)
    # Shorter than the retry bound: every answer completes, exactly.
    assert report.completed == report.generations, report


@pytest.mark.slow
@pytest.mark.parametrize("name", ["oom_long", "readonly_long", "oom_past_lease",
                                  "oom_worker_killed"])
def test_long_fault_ends_generations_unavailable(fault_world: tuple[RedisServer, Stack],
                                                name: str) -> None:
    server, stack = fault_world
    report = run_case(stack, server, CASES[name])
    _assert_clean(report)
    assert report.unavailable >= 1, report  # the fault outlasted the bound mid-answer


def test_web_answers_503_and_readyz_says_why_while_redis_is_full(
        fault_world: tuple[RedisServer, Stack]) -> None:
    import redis

    server, stack = fault_world
    client = redis.Redis.from_url(server.url)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 100_000)
    try:
        resp = requests.post(stack.url("/v1/generations"), timeout=10,
                             json={"messages": [{"role": "user", "content": "x"}]})
        assert resp.status_code == 503, resp.text
        assert resp.headers["Retry-After"] and resp.json()["error"]["type"] == "unavailable"
        ready = requests.get(stack.url("/readyz"), timeout=10)
        assert ready.status_code == 503
        assert ready.json()["writable"] is False and ready.json()["redis"] is True
    finally:
        client.config_set("maxmemory", 0)
        client.close()
    assert requests.get(stack.url("/readyz"), timeout=10).status_code == 200
