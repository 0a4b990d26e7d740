"""Operations: /metrics counting real traffic, JSON logs without secrets or prompts.

One shared stack with auth on and a fast metrics flush; a second, short-lived
one with SPOOL_LOG_CONTENT=1 shows the content switch really works.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api, StackFactory
from tests.harness import Stack, wait_until
from tests.sseclient import read_stream

API_KEY = "sk-opstest-0123456789abcdefXYZ"
SECRET = "s" * 16 + "-ops-secret-key-material-0042"
PROMPT = "PROMPT-MARKER-7c1e what is the capital of France?"
ANSWER = "ANSWER-MARKER-93ab Paris is the capital of France."
OPS_ENV = {
    "SPOOL_API_KEYS": f"acme:{API_KEY}",
    "SPOOL_SECRET_KEY": SECRET,
    "SPOOL_METRICS_FLUSH_S": "0.2",
    "SPOOL_LOG_FORMAT": "json",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """GET /metrics and index every sample by (name, labels)."""
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def ops_stack(redis_server: Any) -> Iterator[Stack]:
    stack = Stack(redis_server.url, OPS_ENV)
    stack.start_web()
    stack.start_worker()
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def ops_api(ops_stack: Stack) -> Iterator[Api]:
    client = Api(ops_stack, key=API_KEY)
    yield client
    # An idle keep-alive connection would hold gunicorn's graceful shutdown.
    client.session.close()


def test_metrics_count_real_traffic(ops_stack: Stack, ops_api: Api) -> None:
    url = ops_stack.url("/metrics")
    before = scrape(url)
    ok = [ops_api.create("one two three four five six seven") for _ in range(2)]
    failing = ops_api.create("a b c d e f g h", mock={"fail_after_tokens": 2,
                                                      "fail_with": "rate_limit"})
    for created in [*ok, failing]:
        assert ops_api.stream(created).complete
    expected_done = value(before, "spool_generations_total", provider="mock",
                          outcome="completed", finish_reason="stop") + 2

    def counted() -> Samples | None:
        now = scrape(url)
        done = value(now, "spool_generations_total", provider="mock", outcome="completed",
                     finish_reason="stop")
        return now if done >= expected_done else None

    after = wait_until(counted, 15, 0.2, "completed generations in /metrics")
    assert value(after, "spool_generations_total", provider="mock", outcome="completed",
                 finish_reason="stop") == expected_done
    assert value(after, "spool_generations_total", provider="mock", outcome="failed",
                 finish_reason="error") == value(
        before, "spool_generations_total", provider="mock", outcome="failed",
        finish_reason="error") + 1
    assert value(after, "spool_provider_errors_total", provider="mock",
                 type="rate_limited") == value(
        before, "spool_provider_errors_total", provider="mock", type="rate_limited") + 1
    # Every generation produced a first token; the longer ones several more.
    ttft = value(after, "spool_ttft_seconds_count", provider="mock") - value(
        before, "spool_ttft_seconds_count", provider="mock")
    assert ttft == 3
    assert value(after, "spool_ttft_seconds_bucket", provider="mock", le="+Inf") >= ttft
    itl = value(after, "spool_inter_token_seconds_count", provider="mock") - value(
        before, "spool_inter_token_seconds_count", provider="mock")
    assert itl >= 8
    assert value(after, "spool_inter_token_seconds_sum", provider="mock") > 0
    assert value(after, "spool_queue_wait_seconds_count", queue="interactive") >= 3
    assert value(after, "spool_sse_streams_total") - value(before, "spool_sse_streams_total") == 3
    assert value(after, "spool_redis_up") == 1
    assert value(after, "spool_processes", kind="web") == 1
    assert value(after, "spool_processes", kind="worker") == 1
    assert value(after, "spool_worker_slots") >= 1


def test_gauges_follow_a_live_stream(ops_stack: Stack, ops_api: Api) -> None:
    url = ops_stack.url("/metrics")
    created = ops_api.create("word " * 400, mock={"tokens_per_second": 20, "ttft_ms": 0})
    events: list[Any] = []
    reader = threading.Thread(target=lambda: events.extend(
        read_stream(ops_api.url(created["stream_url"]), {}).events))
    reader.start()

    def busy() -> Samples | None:
        now = scrape(url)
        live = (value(now, "spool_sse_readers") >= 1
                and value(now, "spool_worker_slots_in_use") == 1
                and value(now, "spool_generations_running", queue="interactive") == 1)
        return now if live else None

    wait_until(busy, 15, 0.2, "reader, slot and running gauges")
    resp = ops_api.post(f"/v1/generations/{created['id']}/cancel")
    assert resp.status_code == 202
    reader.join(15)
    assert events and events[-1].event == "cancelled"

    def idle() -> Samples | None:
        now = scrape(url)
        quiet = (value(now, "spool_sse_readers") == 0
                 and value(now, "spool_worker_slots_in_use") == 0
                 and value(now, "spool_generations_running", queue="interactive") == 0)
        return now if quiet else None

    after = wait_until(idle, 15, 0.2, "gauges back to zero")
    assert value(after, "spool_generations_total", provider="mock", outcome="cancelled",
                 finish_reason="cancelled") >= 1


def full_logs(stack: Stack) -> str:
    """Everything every process of the stack wrote."""
    return "\n".join(p.output() for p in [*stack.webs, *stack.workers])


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_logs_are_json_with_context_and_no_secrets(ops_stack: Stack, ops_api: Api) -> None:
    resp = ops_api.post("/v1/generations", {
        "messages": [{"role": "user", "content": PROMPT}],
        "mock": {"text": ANSWER, "tokens_per_second": 200, "ttft_ms": 10},
    }, headers={"X-Request-ID": "req-ops-42"})
    assert resp.status_code == 202
    assert resp.headers["X-Request-ID"] == "req-ops-42"
    created = resp.json()
    token = created["stream_url"].split("token=", 1)[1]
    assert read_stream(ops_api.url(created["stream_url"]), {}).complete
    assert ops_api.get("/v1/generations/nope").status_code == 404
    gen_id = created["id"]

    def settled() -> str | None:
        # This generation's own end line (an earlier test's would match "generation
        # ended" alone, and the worker logs it just after the stream saw `done`).
        # Request lines are written in batches (spool/linebuffer.py): wait for both.
        text = full_logs(ops_stack)
        ended = any("generation ended" in line and f'"generation_id":"{gen_id}"' in line
                    for line in text.splitlines())
        requests = '"request_id":"req-ops-42"' in text and f"/{gen_id}/events" in text
        return text if ended and requests else None

    logs = wait_until(settled, 15, 0.2, "log lines of the generation")
    for secret in (API_KEY, SECRET, token, PROMPT, ANSWER, "PROMPT-MARKER", "ANSWER-MARKER"):
        assert secret not in logs, f"{secret[:12]}... leaked into the logs"
    lines = _json_lines(logs)
    assert lines, "no JSON log lines at all"
    for line in lines:
        assert {"ts", "level", "logger", "event"} <= line.keys()
    create = next(x for x in lines
                  if x["event"] == "request" and x.get("request_id") == "req-ops-42")
    assert create["tenant"] == "acme"
    assert create["generation_id"] == gen_id
    assert create["status"] == 202 and create["method"] == "POST"
    stream = next(x for x in lines if x["event"] == "request"
                  and x["path"] == f"/v1/generations/{gen_id}/events")
    assert stream["generation_id"] == gen_id and stream["tenant"] == "acme"
    assert stream["streaming"] is True
    ended = next(x for x in lines if x["event"] == "generation ended"
                 and x.get("generation_id") == gen_id)
    assert ended["tenant"] == "acme" and ended["outcome"] == "completed"
    assert ended["prompt"] == f"<{len(PROMPT)} chars>"
    assert ended["answer"] == f"<{len(ANSWER)} chars>"


def test_batch_creation_log_line_names_the_batch(ops_stack: Stack, ops_api: Api) -> None:
    resp = ops_api.post("/v1/batches", {"requests": [
        {"custom_id": "a", "messages": [{"role": "user", "content": "hi"}]}]},
        headers={"X-Request-ID": "req-ops-batch"})
    assert resp.status_code == 202, resp.text

    def line() -> dict[str, Any] | None:
        return next((x for x in _json_lines(full_logs(ops_stack)) if x["event"] == "request"
                     and x.get("request_id") == "req-ops-batch"), None)

    found = wait_until(line, 15, 0.2, "the batch request's log line")
    assert found["batch_id"] == resp.json()["id"] and found["status"] == 202


def test_log_content_switch_logs_prompt_and_answer(make_stack: StackFactory) -> None:
    stack = make_stack(env={"SPOOL_LOG_CONTENT": "1", "SPOOL_LOG_FORMAT": "json"})
    api = Api(stack)
    created = api.create(ANSWER, messages=[{"role": "user", "content": PROMPT}])
    assert api.stream(created).complete

    def ended() -> dict[str, Any] | None:
        lines = _json_lines(full_logs(stack))
        return next((x for x in lines if x["event"] == "generation ended"
                     and x.get("generation_id") == created["id"]), None)

    line = wait_until(ended, 15, 0.2, "generation ended line")
    api.session.close()
    assert line["prompt"] == PROMPT
    assert line["answer"] == ANSWER
    assert line["tenant"] == "dev"
