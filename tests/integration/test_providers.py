"""Real SDKs → the loopback fake provider, through real gunicorn web and worker processes.

The issue's "Done when" list, for both providers: exact text, a parsed tool
call with `finish_reason: tool_calls`, usage in `done`, a 429 retried to
success, a drop after output ending in `error`, HTTP 500 ending in `error`
after bounded retries, cancel closing the upstream connection within 1 s,
and a fallback chain switching provider on a pre-output failure. Plus JSON
mode, truncation, in-band errors and an idle-timeout stall.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Api
from tests.fakeprovider import FakeProvider, matching, scenario
from tests.harness import Stack
from tests.sseclient import StreamResult

VENDORS = ["openai", "anthropic"]
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
ATTEMPTS = 3
IDLE_TIMEOUT_S = 1.5
DISCONNECT_WITHIN_S = 1.0
TEXT = "Hello, 世界! 🙂 e\u0301 line\nbreak — \"quoted\" done."


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    server = FakeProvider()
    yield server
    server.stop()


def provider_env(fake: FakeProvider, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": fake.openai_base_url, "ANTHROPIC_BASE_URL": fake.anthropic_base_url,
        "OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "ak-test",
        "SPOOL_RETRY_ATTEMPTS": str(ATTEMPTS), "SPOOL_RETRY_BASE_S": "0.05",
        "SPOOL_RETRY_MAX_S": "2", "SPOOL_FIRST_TOKEN_TIMEOUT_S": "10",
        "SPOOL_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S), **extra,
    }


def boot(redis_url: str, env: dict[str, str]) -> Stack:
    stack = Stack(redis_url, env)
    try:
        stack.start_web()
        stack.start_worker()
    except BaseException:
        print(stack.logs())
        stack.close()
        raise
    return stack


@pytest.fixture(scope="module")
def papi(redis_server: Any, fake: FakeProvider) -> Iterator[Api]:
    stack = boot(redis_server.url, provider_env(fake))
    yield Api(stack)
    stack.close()


@pytest.fixture(params=VENDORS)
def vendor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def create(api: Api, vendor: str, spec: dict[str, Any], **fields: Any) -> tuple[dict[str, Any],
                                                                               str]:
    """Start a generation whose prompt makes the fake play `spec`; returns (202 body, key)."""
    key = uuid.uuid4().hex
    body = {"provider": vendor,
            "messages": [{"role": "user", "content": scenario(key=key, **spec)}], **fields}
    resp = api.post("/v1/generations", body)
    assert resp.status_code == 202, resp.text
    return resp.json(), key


def finish(result: StreamResult) -> dict[str, Any]:
    assert result.complete and result.events, result
    return {"event": result.events[-1].event, **result.events[-1].data}


def deltas(result: StreamResult) -> str:
    return "".join(e.data["text"] for e in result.events if e.event == "delta")


def named(result: StreamResult, name: str) -> list[Any]:
    return [e.data for e in result.events if e.event == name]


def test_exact_text_and_usage(papi: Api, fake: FakeProvider, vendor: str) -> None:
    created, key = create(papi, vendor, {"text": TEXT, "chunk_chars": 3,
                                         "usage": {"input_tokens": 12, "output_tokens": 34}})
    result = papi.stream(created)
    end = finish(result)
    assert end["event"] == "done" and end["finish_reason"] == "stop"
    assert end["usage"] == {"input_tokens": 12, "output_tokens": 34}
    assert deltas(result) == TEXT
    record = papi.generation(created["id"])
    assert record["text"] == TEXT and record["status"] == "completed"
    assert record["usage"] == {"input_tokens": 12, "output_tokens": 34}
    [sent] = matching(fake.requests(), key)
    assert sent["path"] == PATHS[vendor]


def test_tool_call(papi: Api, vendor: str) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2],
                                                   "note": "ünïcode ✓"}}]
    created, _ = create(papi, vendor, {"text": "Checking.", "tool_calls": calls},
                        tools=[{"type": "function", "function": {
                            "name": "get_weather", "parameters": {"type": "object"}}}])
    result = papi.stream(created)
    end = finish(result)
    assert end["event"] == "done" and end["finish_reason"] == "tool_calls"
    [call] = named(result, "tool_call")
    assert call["index"] == 0 and call["name"] == "get_weather" and call["id"]
    assert call["arguments"] == calls[0]["arguments"]
    record = papi.generation(created["id"])
    assert record["tool_calls"][0]["arguments"] == calls[0]["arguments"]
    assert record["finish_reason"] == "tool_calls"


def test_tool_choice_reaches_the_provider(papi: Api, fake: FakeProvider, vendor: str) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    created, key = create(papi, vendor, {"text": "", "tool_calls": calls},
                          tools=[{"type": "function", "function": {
                              "name": "get_weather", "parameters": {"type": "object"}}}],
                          tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert finish(papi.stream(created))["finish_reason"] == "tool_calls"
    [sent] = matching(fake.requests(), key)
    expected = ({"type": "function", "function": {"name": "get_weather"}} if vendor == "openai"
                else {"type": "tool", "name": "get_weather"})
    assert sent["body"]["tool_choice"] == expected


def test_429_before_output_is_retried_to_success(papi: Api, fake: FakeProvider,
                                                 vendor: str) -> None:
    created, key = create(papi, vendor, {"text": "after the wait", "fault": "429",
                                         "fail_times": 1, "retry_after_s": 0.5})
    result = papi.stream(created)
    assert finish(result)["event"] == "done" and deltas(result) == "after the wait"
    [notice] = named(result, "notice")
    assert "429" in notice["message"] and "retrying" in notice["message"]
    first, second = matching(fake.requests(), key)
    assert second["started_at"] - first["finished_at"] >= 0.5


def test_500_ends_in_error_after_bounded_retries(papi: Api, fake: FakeProvider,
                                                 vendor: str) -> None:
    created, key = create(papi, vendor, {"text": "never", "fault": "500"})
    result = papi.stream(created)
    end = finish(result)
    assert end["event"] == "error" and end["type"] == "provider_error"
    assert end["retryable"] is True and "500" in end["message"]
    assert len(named(result, "notice")) == ATTEMPTS - 1 and deltas(result) == ""
    assert len(matching(fake.requests(), key)) == ATTEMPTS
    assert papi.generation(created["id"])["status"] == "failed"


def test_drop_after_output_ends_in_error(papi: Api, fake: FakeProvider, vendor: str) -> None:
    created, key = create(papi, vendor, {"text": "abcdefgh", "chunk_chars": 2,
                                         "fault": "drop", "fault_after_tokens": 2})
    result = papi.stream(created)
    end = finish(result)
    assert end["event"] == "error" and end["retryable"] is True
    assert deltas(result) == "abcd"
    assert len(matching(fake.requests(), key)) == 1  # output was sent: never retried
    record = papi.generation(created["id"])
    assert record["status"] == "failed" and record["text"] == "abcd"


def test_in_band_error_after_output(papi: Api, vendor: str) -> None:
    created, _ = create(papi, vendor, {"text": "abcdefgh", "chunk_chars": 2,
                                       "fault": "inband_error", "fault_after_tokens": 1})
    result = papi.stream(created)
    end = finish(result)
    assert end["event"] == "error" and end["type"] == "provider_error"
    assert deltas(result) == "ab"


def test_truncated_stream_is_an_error_not_done(papi: Api, vendor: str) -> None:
    created, _ = create(papi, vendor, {"text": "abcdefgh", "chunk_chars": 2,
                                       "fault": "truncate", "fault_after_tokens": 3})
    result = papi.stream(created)
    end = finish(result)
    assert end["event"] == "error" and "finish" in end["message"]
    assert deltas(result) == "abcdef"


def test_stall_hits_the_idle_timeout(papi: Api, fake: FakeProvider, vendor: str) -> None:
    created, key = create(papi, vendor, {"text": "abcdefgh", "chunk_chars": 2,
                                         "fault": "stall", "fault_after_tokens": 1})
    result = papi.stream(created)
    end = finish(result)
    assert end["event"] == "error" and end["type"] == "timeout" and end["retryable"] is True
    assert deltas(result) == "ab"
    [record] = matching(fake.requests(), key)
    assert record["client_disconnected"] is True


def test_cancel_closes_the_upstream_connection(papi: Api, fake: FakeProvider,
                                               vendor: str) -> None:
    created, key = create(papi, vendor, {"tokens": 1000, "tps": 10, "ttft_ms": 0})
    head = papi.stream(created, max_events=3)  # queued, in_progress, first delta
    assert [e.event for e in head.events][-1] == "delta"
    cancelled_at = time.time()
    resp = papi.post(f"/v1/generations/{created['id']}/cancel")
    assert resp.status_code == 202, resp.text
    deadline = time.monotonic() + 10
    while True:
        [record] = matching(fake.requests(), key)
        if record["client_disconnected"] or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert record["client_disconnected"] is True
    assert record["disconnected_at"] - cancelled_at < DISCONNECT_WITHIN_S
    end = finish(papi.stream(created))
    assert end["event"] == "cancelled" and end["reason"] == "user"


@pytest.mark.parametrize(("text", "parsed"), [('{"answer": [1, 2], "ok": true}',
                                               {"answer": [1, 2], "ok": True}),
                                              ("not json {", None)])
def test_json_mode(papi: Api, fake: FakeProvider, vendor: str, text: str,
                   parsed: Any) -> None:
    created, key = create(papi, vendor, {"text": text, "chunk_chars": 3},
                          response_format={"type": "json_object"})
    result = papi.stream(created)
    end = finish(result)
    assert deltas(result) == text
    if parsed is None:
        assert end["event"] == "error" and end["type"] == "invalid_json"
    else:
        assert end["event"] == "done" and end["parsed"] == parsed
    [sent] = matching(fake.requests(), key)
    if vendor == "openai":
        assert sent["body"]["response_format"] == {"type": "json_object"}
    else:
        assert "response_format" not in sent["body"]


@pytest.fixture(scope="module")
def fallback_api(redis_server: Any, fake: FakeProvider) -> Iterator[Api]:
    env = provider_env(fake, SPOOL_FALLBACK_PROVIDERS="openai,anthropic")
    stack = boot(redis_server.url, env)
    yield Api(stack)
    stack.close()


def test_fallback_chain_switches_provider(fallback_api: Api, fake: FakeProvider,
                                          vendor: str) -> None:
    other = "anthropic" if vendor == "openai" else "openai"
    created, key = create(fallback_api, vendor, {"text": "served by the fallback",
                                                 "fault": "503", "fail_times": ATTEMPTS})
    result = fallback_api.stream(created)
    end = finish(result)
    assert end["event"] == "done" and deltas(result) == "served by the fallback"
    notices = [n["message"] for n in named(result, "notice")]
    assert len(notices) == ATTEMPTS and f"falling back to {other}" in notices[-1]
    records = matching(fake.requests(), key)
    assert [r["path"] for r in records] == [PATHS[vendor]] * ATTEMPTS + [PATHS[other]]
    generation = fallback_api.generation(created["id"])
    assert generation["provider"] == other  # the record names who really answered
    assert generation["model"] == records[-1]["body"]["model"]
