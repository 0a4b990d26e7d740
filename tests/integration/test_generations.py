"""The generation lifecycle: record, cancel, /v1/chat, idempotency, heartbeats."""

from __future__ import annotations

import threading
import time

import redis

from tests.conftest import Api, StackFactory
from tests.harness import wait_until


def test_record_while_streaming_and_after(api: Api) -> None:
    created = api.create("one two three four five six", mock={"tokens_per_second": 10,
                                                                "ttft_ms": 0})
    first = api.stream(created, max_events=4)
    assert [e.event for e in first.events] == ["status", "status", "delta", "delta"]
    record = api.generation(created["id"])
    assert record["status"] == "in_progress"
    assert record["text"].startswith("one two")
    assert record["started_at"] and record["finished_at"] is None
    assert record["metrics"]["queue_ms"] is not None
    assert record["provider"] == "mock" and record["model"] == "mock-1"
    api.stream(created)  # to the end
    record = api.generation(created["id"])
    assert record["status"] == "completed"
    assert record["text"] == "one two three four five six"
    assert record["finish_reason"] == "stop"
    assert record["usage"] == {"input_tokens": 1, "output_tokens": 7}
    metrics = record["metrics"]
    assert metrics["ttft_ms"] >= 0 and metrics["duration_ms"] >= metrics["ttft_ms"]
    assert metrics["tokens_per_second"] > 0
    assert record["finished_at"] >= record["started_at"] >= record["created_at"]
    assert record["error"] is None and record["tool_calls"] == []


def test_tool_calls_and_metadata(api: Api) -> None:
    created = api.create("Let me check.", metadata={"user": "u1"},
                         mock={"tool_calls": [{"name": "get_weather",
                                               "arguments": {"city": "Oslo", "days": 3}}]})
    events = api.stream(created).events
    [call] = [e.data for e in events if e.event == "tool_call"]
    assert call["name"] == "get_weather" and call["arguments"] == {"city": "Oslo", "days": 3}
    assert call["index"] == 0 and call["id"]
    assert events[-1].data["finish_reason"] == "tool_calls"
    record = api.generation(created["id"])
    assert record["tool_calls"] == [{"id": call["id"], "name": "get_weather",
                                     "arguments": {"city": "Oslo", "days": 3}}]
    assert record["metadata"] == {"user": "u1"}


def test_provider_failure_mid_stream_is_an_error_event(api: Api) -> None:
    created = api.create("abcdefghijkl", mock={"fail_after_tokens": 2, "fail_with": "rate_limit"})
    events = api.stream(created).events
    assert [e.event for e in events][-3:] == ["delta", "delta", "error"]
    assert events[-1].data == {"type": "rate_limited", "retryable": True,
                               "message": "mock provider: rate limit exceeded"}
    record = api.generation(created["id"])
    assert record["status"] == "failed" and record["finish_reason"] == "error"
    assert record["error"]["type"] == "rate_limited" and record["text"] == "abcdefgh"


def test_cancel_mid_stream_within_a_second(api: Api) -> None:
    created = api.create("x" * 400, mock={"tokens_per_second": 5, "ttft_ms": 0})
    api.stream(created, max_events=3)
    started = time.monotonic()
    resp = api.post(f"/v1/generations/{created['id']}/cancel")
    assert resp.status_code == 202
    assert resp.json()["id"] == created["id"]
    events = api.stream(created).events
    assert events[-1].event == "cancelled" and events[-1].data == {"reason": "user"}
    wait_until(lambda: api.generation(created["id"])["status"] == "cancelled", timeout=5)
    assert time.monotonic() - started < 3  # generous; the contract is 1 s after the request
    record = api.generation(created["id"])
    assert record["finish_reason"] == "cancelled"
    assert [e.event for e in events].count("cancelled") == 1
    again = api.post(f"/v1/generations/{created['id']}/cancel")
    assert again.status_code == 202 and again.json()["status"] == "cancelled"


def test_cancel_interrupts_a_provider_that_is_waiting(api: Api) -> None:
    # A long time-to-first-token: the runner is blocked inside the provider.
    created = api.create("late", mock={"ttft_ms": 60_000})
    wait_until(lambda: api.generation(created["id"])["status"] == "in_progress", timeout=10)
    api.post(f"/v1/generations/{created['id']}/cancel")
    wait_until(lambda: api.generation(created["id"])["status"] == "cancelled", timeout=2,
               what="cancel within the contract")


def test_cancel_completed_is_conflict(api: Api) -> None:
    created = api.create("done")
    api.stream(created)
    resp = api.post(f"/v1/generations/{created['id']}/cancel")
    assert resp.status_code == 409
    assert resp.json()["error"]["type"] == "conflict"


def test_chat_waits_and_returns_the_record(api: Api) -> None:
    resp = api.post("/v1/chat", {"messages": [{"role": "user", "content": "hi"}],
                                 "mock": {"text": "Hi there 👋", "tokens_per_second": 100,
                                          "ttft_ms": 10}})
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "completed" and body["text"] == "Hi there 👋"
    assert body["object"] == "generation" and body["id"].startswith("gen_")


def test_chat_timeout_is_504_with_the_id(make_stack: StackFactory) -> None:
    stack = make_stack(env={"SPOOL_CHAT_TIMEOUT_S": "0.5"})
    client = Api(stack)
    resp = client.post("/v1/chat", {"messages": [{"role": "user", "content": "hi"}],
                                    "mock": {"text": "slow answer", "tokens_per_second": 2,
                                             "ttft_ms": 0}})
    assert resp.status_code == 504
    body = resp.json()
    assert body["error"]["type"] == "timeout" and body["id"].startswith("gen_")
    # It keeps running and can still be read.
    events = client.stream({"stream_url": f"/v1/generations/{body['id']}/events"}).events
    assert events[-1].event == "done"
    assert client.generation(body["id"])["text"] == "slow answer"


def test_idempotency_key_returns_the_same_generation(api: Api) -> None:
    body = {"messages": [{"role": "user", "content": "once"}], "idempotency_key": "order-42",
            "mock": {"tokens_per_second": 0, "ttft_ms": 0}}
    first = api.post("/v1/generations", body).json()
    second = api.post("/v1/generations", body).json()
    other = api.post("/v1/generations", {**body, "idempotency_key": "order-43"}).json()
    assert first["id"] == second["id"] != other["id"]
    # Concurrent duplicates also collapse to one generation.
    ids: list[str] = []
    concurrent = {**body, "idempotency_key": "race"}

    def post() -> None:
        ids.append(api.post("/v1/generations", concurrent).json()["id"])

    threads = [threading.Thread(target=post) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1


def test_ping_comment_during_silence(make_stack: StackFactory) -> None:
    stack = make_stack(env={"SPOOL_PING_INTERVAL_S": "0.3"})
    client = Api(stack)
    created = client.create("after a pause", mock={"ttft_ms": 1500})
    result = client.stream(created)
    assert "ping" in result.comments
    assert result.events[-1].event == "done"


def test_health_and_readiness(api: Api) -> None:
    assert api.get("/healthz").status_code == 200
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["workers"] >= 1


def test_a_poller_reads_the_record_without_its_prompt(api: Api) -> None:
    """`GET /v1/generations/{id}` is polled; it must not fetch the (long) request each time."""
    prompt = "a long prompt " * 20_000  # ~280 KB in the record
    created = api.create("short answer", messages=[{"role": "user", "content": prompt}])
    api.stream(created)
    server = redis.Redis.from_url(api.stack.redis_url)
    try:
        before = server.info("stats")["total_net_output_bytes"]
        record = api.generation(created["id"])
        sent = server.info("stats")["total_net_output_bytes"] - before
    finally:
        server.close()
    assert record["text"] == "short answer" and record["status"] == "completed"
    assert isinstance(record["readers"], int)  # read in the same round trip
    assert sent < len(prompt) // 4
