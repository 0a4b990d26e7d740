"""Rate and active limits hold across two web processes (they live in Redis)."""

from __future__ import annotations

import secrets
import time
from typing import Any

import requests

from spool.keys import Keys
from tests.conftest import FAST_MOCK, Api, StackFactory

RATE = 30  # above what the active-limit part sends per key
MAX_ACTIVE = 2
KEY_R1, KEY_R2 = "r1-" + secrets.token_hex(12), "r2-" + secrets.token_hex(12)
KEY_A, KEY_B = "a-" + secrets.token_hex(12), "b-" + secrets.token_hex(12)
SECRET = secrets.token_hex(24)
HOLD = {"ttft_ms": 60_000}


def limited_stack(make_stack: StackFactory) -> Any:
    return make_stack(webs=2, env={
        "SPOOL_API_KEYS": f"rate:{KEY_R1},rate:{KEY_R2},alpha:{KEY_A},beta:{KEY_B}",
        "SPOOL_SECRET_KEY": SECRET,
        "SPOOL_RATE_LIMIT": str(RATE),
        "SPOOL_MAX_ACTIVE": str(MAX_ACTIVE),
        "SPOOL_WEB_GRACE_S": "2",  # idle keep-alive clients would hold shutdown for 20 s
    })


def assert_429(resp: requests.Response, max_wait: int, why: str) -> int:
    assert resp.status_code == 429, resp.text
    assert resp.json()["error"]["type"] == "rate_limited"
    assert why in resp.json()["error"]["message"]
    assert set(resp.json()["error"]) == {"type", "message", "param"}
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= max_wait
    return retry_after


def wait_for_fresh_window(budget_s: float) -> None:
    """Start right after a minute boundary if the rest of this window is short."""
    left = 60 - time.time() % 60
    if left < budget_s:
        time.sleep(left + 0.2)


def test_limits_across_two_web_processes(make_stack: StackFactory) -> None:
    stack = limited_stack(make_stack)
    check_rate_limit(stack)
    check_active_limit(stack)


def check_rate_limit(stack: Any) -> None:
    wait_for_fresh_window(20)
    r1 = [Api(stack, key=KEY_R1, web=0), Api(stack, key=KEY_R1, web=1)]
    # Any authenticated request counts, a 404 as much as a 200.
    path = f"/v1/generations/gen_{secrets.token_urlsafe(18)}"
    # The budget is shared by both processes: alternate between them.
    for i in range(RATE):
        assert r1[i % 2].get(path).status_code == 404, i
    for web in (0, 1):
        assert_429(r1[web].get(path), 60, "per minute")
        assert_429(r1[web].post("/v1/generations", {"messages": []}), 60, "per minute")
    # The OpenAI facade shares the budget (and says so in OpenAI's words).
    facade = r1[0].get("/v1/models")
    assert facade.status_code == 429 and "Retry-After" in facade.headers
    assert facade.json()["error"]["code"] == "rate_limit_exceeded"
    # Per key: another key of the same tenant has its own budget.
    assert Api(stack, key=KEY_R2, web=1).get(path).status_code == 404
    # An unauthenticated request is a 401, never counted against anyone.
    assert requests.get(stack.url(path, 1), timeout=30).status_code == 401
    # Retry-After is when the window ends (waiting it out would cost a minute).
    retry_after = int(r1[1].get(path).headers["Retry-After"])
    assert abs(retry_after - (60 - time.time() % 60)) <= 2


def check_active_limit(stack: Any) -> None:
    alpha = [Api(stack, key=KEY_A, web=0), Api(stack, key=KEY_A, web=1)]
    # Finished generations do not count: two fast ones end, then two held ones fit.
    for web in (0, 1):
        done = alpha[web].create("quick")
        assert alpha[web].stream(done).events[-1].event == "done"
    held = [alpha[0].create("held", mock=HOLD), alpha[1].create("held", mock=HOLD)]
    body = {"messages": [{"role": "user", "content": "x"}], "mock": FAST_MOCK}
    for web in (0, 1):
        assert_429(alpha[web].post("/v1/generations", body), 60, "at once")
        assert_429(alpha[web].post("/v1/chat", body), 60, "at once")
    # Another tenant is not affected by alpha's limit.
    beta = Api(stack, key=KEY_B, web=1)
    beta.post(f"/v1/generations/{beta.create('beta')['id']}/cancel")
    # Ending one (no worker hook needed: the record's `ended` frees the place).
    # The second is likely still queued behind the first, so the web ends it.
    gen_id = held[1]["id"]
    assert alpha[1].post(f"/v1/generations/{gen_id}/cancel").status_code == 202
    deadline = time.monotonic() + 20
    while alpha[0].generation(gen_id)["status"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    replacement = alpha[0].post("/v1/generations", body)
    assert replacement.status_code == 202, replacement.text
    assert_429(alpha[1].post("/v1/generations", body), 60, "at once")
    # The index of active generations expires with the generations' keys.
    import redis

    client = redis.Redis.from_url(stack.redis_url)
    active_key = Keys(stack.namespace).active("alpha")
    assert client.zcard(active_key) == MAX_ACTIVE
    assert client.ttl(active_key) > 0
    client.close()
    # Held generations would keep a graceful worker stop waiting: end it now.
    stack.workers[0].kill()


def test_idempotent_retry_does_not_take_a_second_place(make_stack: StackFactory) -> None:
    # Dev mode (no keys), with the limit set explicitly: it applies.
    stack = make_stack(env={"SPOOL_MAX_ACTIVE": "1", "SPOOL_WEB_GRACE_S": "2"})
    api = Api(stack)
    first = api.create("once", mock=HOLD, idempotency_key="k1")
    again = api.create("once", mock=HOLD, idempotency_key="k1")
    assert again["id"] == first["id"]
    resp = api.post("/v1/generations", {"messages": [{"role": "user", "content": "x"}]})
    assert_429(resp, 60, "at once")
    stack.workers[0].kill()


def test_racing_reservations_never_pass_the_limit(redis_server: Any) -> None:
    """Many processes' requests at once: at most `limit` get a place, never more."""
    import threading

    import redis

    from spool import limits
    from spool.clock import now_ms

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys, limit, racers = Keys("t" + secrets.token_hex(6)), 5, 40
    barrier = threading.Barrier(racers)
    allowed: list[str] = []

    def attempt(i: int) -> None:
        gen_id = f"gen_race{i:020d}"
        barrier.wait()
        if limits.reserve_active(client, keys, "t", gen_id, limit, 60, now_ms()).allowed:
            allowed.append(gen_id)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= len(allowed) <= limit
    assert client.zcard(keys.active("t")) == len(allowed)
    # A reservation whose record is not written yet is kept (it is about to be) ...
    assert limits.prune_active(client, keys, "t", now_ms()) == len(allowed)
    # ... one whose generation ended is dropped, and so is one long without a record.
    client.hset(keys.record(allowed[0]), mapping={"tenant": "t", "ended": "5"})
    client.expire(keys.record(allowed[0]), 60)
    later = now_ms() + limits.RESERVATION_GRACE_MS + 1
    assert limits.prune_active(client, keys, "t", now_ms()) == len(allowed) - 1
    assert limits.prune_active(client, keys, "t", later) == 0
    client.delete(keys.active("t"), keys.record(allowed[0]))
    client.close()
