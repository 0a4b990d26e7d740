"""The tenant's active count: exact under concurrent POSTs to two web processes,
and given back when a worker is killed (real gunicorn, worker and Redis).

Admission checks and takes a place in one script (O(1): the size of the
tenant's active set); whoever ends a generation gives its place back, the
lease settler included. These tests count the set itself, not just 429s.
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import requests

from spool.keys import Keys
from tests.conftest import StackFactory
from tests.harness import wait_until

KEY = "ac-" + secrets.token_hex(12)
SECRET = secrets.token_hex(24)
POSTS = 200
LIMIT = 120
HELD = {"ttft_ms": 120_000, "text": "held"}
SETTLE_LIMIT_S = 15.0


def _stack(make_stack: StackFactory, limit: int, webs: int = 2) -> Any:
    return make_stack(webs=webs, env={
        "SPOOL_API_KEYS": f"acme:{KEY}", "SPOOL_SECRET_KEY": SECRET,
        "SPOOL_MAX_ACTIVE": str(limit), "SPOOL_RATE_LIMIT": "100000",
        "SPOOL_WEB_GRACE_S": "2", "SPOOL_WORKER_SLOTS": "300",
    })


def _post(stack: Any, web: int, mock: dict[str, Any]) -> requests.Response:
    body = {"messages": [{"role": "user", "content": "hi"}], "mock": mock}
    return requests.post(stack.url("/v1/generations", web), json=body, timeout=60,
                         headers={"Authorization": f"Bearer {KEY}"})


def _burst(stack: Any, count: int, mock: dict[str, Any]) -> list[requests.Response]:
    """`count` POSTs at once, alternating between the stack's web processes."""
    webs = len(stack.webs)
    with ThreadPoolExecutor(max_workers=64) as pool:
        return list(pool.map(lambda i: _post(stack, i % webs, mock), range(count)))


def _cancel(stack: Any, gen_id: str) -> None:
    resp = requests.post(stack.url(f"/v1/generations/{gen_id}/cancel"), timeout=60,
                         headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status_code == 202, resp.text


def test_active_count_is_exact_under_concurrent_posts(make_stack: StackFactory) -> None:
    stack = _stack(make_stack, LIMIT)
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    active = Keys(stack.namespace).active("acme")
    try:
        responses = _burst(stack, POSTS, HELD)
        admitted = [r.json()["id"] for r in responses if r.status_code == 202]
        refused = [r for r in responses if r.status_code == 429]
        # Exactly the limit, never more, never fewer: the check and the add are atomic.
        assert len(admitted) == LIMIT, [r.text for r in responses if r.status_code != 202][:3]
        assert len(refused) == POSTS - LIMIT
        assert all("at once" in r.json()["error"]["message"] for r in refused)
        assert set(client.zrange(active, 0, -1)) == set(admitted)
        # Cancelling gives places back one for one (queued ones by the web,
        # running ones by the worker once it has written `cancelled`).
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda g: _cancel(stack, g), admitted[:50]))
        wait_until(lambda: client.zcard(active) == LIMIT - 50, 20, 0.1, "50 places back")
        again = _burst(stack, 80, HELD)
        assert sorted(r.status_code for r in again) == [202] * 50 + [429] * 30
        assert client.zcard(active) == LIMIT
        # Generations that end on their own give their places back too.
        everyone = client.zrange(active, 0, -1)
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda g: _cancel(stack, g), everyone))
        wait_until(lambda: client.zcard(active) == 0, 20, 0.1, "every place back")
        quick = _burst(stack, POSTS, {"ttft_ms": 0, "tokens_per_second": 0, "text": "ok"})
        assert sum(r.status_code == 202 for r in quick) >= LIMIT
        wait_until(lambda: client.zcard(active) == 0, 30, 0.1, "finished generations released")
    finally:
        client.close()
        stack.workers[0].kill()  # held generations would keep a graceful stop waiting


@pytest.mark.slow
def test_places_come_back_after_a_worker_is_killed(make_stack: StackFactory) -> None:
    stack = _stack(make_stack, 10, webs=1)
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    keys = Keys(stack.namespace)
    try:
        slow = {"ttft_ms": 0, "tokens_per_second": 2, "text": "slow tokens " * 50}
        started = [r.json()["id"] for r in _burst(stack, 6, slow)]
        assert len(started) == 6
        # Every one has sent output, so the settler ends them (`worker_lost`).
        wait_until(lambda: all(client.hget(keys.record(g), "output") for g in started), 20,
                   0.1, "output from every generation")
        stack.workers[0].kill()
        killed_at = time.monotonic()
        wait_until(lambda: client.zcard(keys.active("acme")) == 0, SETTLE_LIMIT_S + 5, 0.1,
                   "places released by the lease settler")
        assert time.monotonic() - killed_at <= SETTLE_LIMIT_S
        assert {client.hget(keys.record(g), "status") for g in started} == {"failed"}
        # The whole limit is free again: ten fit, the eleventh does not.
        codes = [r.status_code for r in _burst(stack, 11, HELD)]
        assert sorted(codes) == [202] * 10 + [429]
    finally:
        client.close()
