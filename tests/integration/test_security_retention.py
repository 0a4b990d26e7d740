"""Retention: readable, then 410 while the tombstone lasts, then 404; every key expires."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import redis
import requests

from tests.conftest import Api, StackFactory

RETENTION_S = 2
TOMBSTONE_S = 5  # room for four requests to land inside it on a loaded machine
KEY_A, KEY_B = "a-" + secrets.token_hex(12), "b-" + secrets.token_hex(12)


def poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def statuses(api: Api, created: dict[str, Any]) -> set[int]:
    gen_id = created["id"]
    return {
        api.get(f"/v1/generations/{gen_id}").status_code,
        api.post(f"/v1/generations/{gen_id}/cancel").status_code,
        api.get(f"/v1/generations/{gen_id}/events").status_code,
        requests.get(api.url(created["stream_url"]), timeout=30).status_code,
    }


def test_retention_then_tombstone_then_gone(make_stack: StackFactory) -> None:
    stack = make_stack(env={
        "SPOOL_API_KEYS": f"alpha:{KEY_A},beta:{KEY_B}",
        "SPOOL_SECRET_KEY": secrets.token_hex(24),
        "SPOOL_RETENTION_S": str(RETENTION_S),
        "SPOOL_TOMBSTONE_S": str(TOMBSTONE_S),
        "SPOOL_WEB_GRACE_S": "2",
    })
    alpha, beta = Api(stack, key=KEY_A), Api(stack, key=KEY_B)
    created = alpha.create("kept for a while", idempotency_key="idem-1")
    result = alpha.stream(created)
    assert result.events[-1].event == "done"
    ended_at = time.monotonic()
    # Readable right after the end.
    assert alpha.generation(created["id"])["text"] == "kept for a while"
    # Other endings leave keys too (all checked for a TTL at the end).
    failed = alpha.create("x", mock={"fail_after_tokens": 1})
    tools = alpha.create("x", mock={"tool_calls": [{"name": "f", "arguments": {"a": 1}}]})
    cancelled = alpha.create("x", mock={"ttft_ms": 10_000})
    alpha.post(f"/v1/generations/{cancelled['id']}/cancel")
    for other in (failed, tools):
        assert alpha.stream(other).events[-1].event in ("done", "error")
    # Past retention: 410 for the owner (key or token) on every endpoint ...
    poll(lambda: statuses(alpha, created) == {410}, 20, "410")
    assert time.monotonic() - ended_at >= RETENTION_S - 0.5
    body = alpha.get(f"/v1/generations/{created['id']}").json()
    assert body["error"]["type"] == "expired"
    # ... and still 404 for another tenant: a tombstone reveals nothing either.
    assert beta.get(f"/v1/generations/{created['id']}").status_code == 404
    # Then the tombstone goes too: 404.
    poll(lambda: statuses(alpha, created) == {404}, 20, "404")
    check_every_key_expires(stack, [created, failed, tools, cancelled])


def check_every_key_expires(stack: Any, created: list[dict[str, Any]]) -> None:
    """Scan the namespace: every key Spool wrote has a TTL, so memory is bounded."""
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        Api(stack, key=KEY_B).create("one more, to have live keys as well")
        keys = list(client.scan_iter(match=f"{stack.namespace}:*", count=1000))
        kinds = {key.split(":")[1] for key in keys}
        assert {"gen", "idem", "rate", "active", "workers"} <= kinds, kinds
        no_ttl = [key for key in keys if client.ttl(key) == -1]
        assert no_ttl == []
        # RQ's job hashes of these generations expire too (result/failure TTLs).
        for item in created:
            assert client.ttl(f"rq:job:{item['id']}") != -1
    finally:
        client.close()
