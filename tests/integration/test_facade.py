"""The OpenAI facade driven by the official `openai` SDK against real gunicorn + worker."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import openai
import orjson
import pytest
import redis
import requests

from spool.keys import Keys
from tests.conftest import FAST_MOCK
from tests.harness import Stack, running_stack, wait_until
from tests.sseclient import read_stream

KEY = "sk-facade-" + secrets.token_hex(8)
SECRET = secrets.token_hex(32)
CHAT_TIMEOUT_S = 3
TEXT = "Hello, 世界! 🙂 e\u0301 line\nbreak — \"quoted\" done."
USER = [{"role": "user", "content": "hello"}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
CALLS = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}},
         {"name": "get_time", "arguments": {"zone": "Europe/Paris"}}]


@pytest.fixture(scope="module")
def stack(redis_server: Any) -> Iterator[Stack]:
    with running_stack(redis_server.url, {
            "SPOOL_API_KEYS": f"acme:{KEY}",
            "SPOOL_SECRET_KEY": SECRET,
            "SPOOL_CHAT_TIMEOUT_S": str(CHAT_TIMEOUT_S),
            # Keep-alive comments while waiting for a first token must not trip the SDK.
            "SPOOL_PING_INTERVAL_S": "0.2",
        }) as shared:
        yield shared


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    # No SDK retries: every request must start exactly one generation here.
    return openai.OpenAI(base_url=stack.url("/v1"), api_key=KEY, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def spool(stack: Stack) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {KEY}"
    return session


def mock(**options: Any) -> dict[str, Any]:
    return {"mock": {**FAST_MOCK, **options}}


def generation(stack: Stack, spool: requests.Session, gen_id: str) -> dict[str, Any]:
    resp = spool.get(stack.url(f"/v1/generations/{gen_id}"), timeout=10)
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return found


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def created_s(record: dict[str, Any]) -> int:
    """The generation's creation time in whole seconds (what `created` says)."""
    return int(datetime.fromisoformat(record["created_at"].replace("Z", "+00:00")).timestamp())


def test_non_streamed_exact_text_and_usage(client: openai.OpenAI, stack: Stack,
                                           spool: requests.Session) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="mock/mock-1", messages=USER, extra_body=mock(text=TEXT))
    gen_id = raw.headers["Spool-Generation-Id"]
    result = raw.parse()
    assert result.id == "chatcmpl-" + gen_id.removeprefix("gen_")
    assert result.object == "chat.completion"
    assert result.model == "mock/mock-1"
    choice = result.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == TEXT
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    record = generation(stack, spool, gen_id)
    assert record["status"] == "completed" and record["text"] == TEXT
    assert result.created == created_s(record)
    assert result.usage is not None
    assert result.usage.prompt_tokens == record["usage"]["input_tokens"]
    assert result.usage.completion_tokens == record["usage"]["output_tokens"] > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_streamed_exact_text_with_usage_chunk(client: openai.OpenAI, stack: Stack,
                                              spool: requests.Session) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="mock/mock-1", messages=USER, stream=True,
        stream_options={"include_usage": True},
        extra_body=mock(text=TEXT, chunk="char", ttft_ms=700))  # a few keep-alives first
    gen_id = raw.headers["Spool-Generation-Id"]
    assert raw.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    chunks = list(raw.parse())
    assert {c.id for c in chunks} == {"chatcmpl-" + gen_id.removeprefix("gen_")}
    assert all(c.object == "chat.completion.chunk" and c.model == "mock/mock-1" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == len(TEXT)
    finish = chunks[-2]
    assert finish.choices[0].finish_reason == "stop" and finish.usage is None
    last = chunks[-1]
    assert last.choices == []
    assert all(c.usage is None for c in chunks[:-1])
    record = generation(stack, spool, gen_id)
    assert {c.created for c in chunks} == {created_s(record)}
    assert last.usage is not None
    assert last.usage.prompt_tokens == record["usage"]["input_tokens"]
    assert last.usage.completion_tokens == record["usage"]["output_tokens"]
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_streamed_bytes_end_with_done_and_no_usage_unless_asked(stack: Stack,
                                                                spool: requests.Session) -> None:
    body = {"model": "mock/mock-1", "messages": USER, "stream": True, "max_tokens": 2,
            **mock(text="abcdefghijkl", ttft_ms=700)}
    resp = spool.post(stack.url("/v1/chat/completions"), json=body, stream=True, timeout=30)
    assert resp.status_code == 200
    assert resp.headers["Spool-Generation-Id"].startswith("gen_")
    lines = [line for line in resp.content.split(b"\n\n") if line]
    assert b": keep-alive" in lines  # sent while waiting for the first token
    lines = [line for line in lines if not line.startswith(b":")]
    assert lines[-1] == b"data: [DONE]"
    chunks = [orjson.loads(line.removeprefix(b"data: ")) for line in lines[:-1]]
    assert all("usage" not in c for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "abcdefgh"
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": "length"}


def test_tool_calls_non_streamed(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model="mock/mock-1", messages=USER, tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="auto", extra_body=mock(text="", tool_calls=CALLS))
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.type, c.function.name, orjson.loads(c.function.arguments))  # type: ignore[union-attr]
            for c in calls] == [("function", call["name"], call["arguments"]) for call in CALLS]
    assert len({c.id for c in calls}) == 2


def test_tool_calls_streamed_accumulate_in_the_sdk(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="mock/mock-1", messages=USER, tools=[WEATHER_TOOL],  # type: ignore[list-item]
        extra_body=mock(text="Let me check.", tool_calls=CALLS),
    ) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert [(e.name, orjson.loads(e.arguments)) for e in done] == [
        (call["name"], call["arguments"]) for call in CALLS]
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = choice.message.tool_calls or []
    assert [orjson.loads(c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        call["arguments"] for call in CALLS]


def test_unknown_model_prefix_is_an_openai_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="azure/gpt-4o", messages=USER)
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict)
    assert sorted(body) == ["code", "message", "param", "type"]
    assert (body["type"], body["param"], body["code"]) == (
        "invalid_request_error", "model", "model_not_found")
    assert "azure/gpt-4o" in body["message"]
    assert "Spool-Generation-Id" not in caught.value.response.headers


def test_unconfigured_provider_and_bad_values_are_openai_400s(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="openai/gpt-4o", messages=USER)
    assert (caught.value.param, caught.value.code) == ("model", "model_not_found")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="mock/mock-1", messages=USER, temperature=5)
    assert (caught.value.param, caught.value.type) == ("temperature", "invalid_request_error")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="mock/mock-1", messages=USER,
                                       max_completion_tokens=10**9)
    assert caught.value.param == "max_completion_tokens"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="mock/mock-1", messages=USER,
                                       extra_body={"frobnicate": True})
    assert caught.value.code == "unknown_parameter"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="mock/mock-1", messages=[])
    assert caught.value.param == "messages"


def test_wrong_key_is_an_openai_401(stack: Stack) -> None:
    bad = openai.OpenAI(base_url=stack.url("/v1"), api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="mock/mock-1", messages=USER)
    assert (caught.value.status_code, caught.value.code, caught.value.type) == (
        401, "invalid_api_key", "invalid_request_error")
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["mock/mock-1"]  # only the mock is configured on this stack
    assert client.models.retrieve("mock/mock-1").owned_by == "mock"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("openai/gpt-4o")
    assert caught.value.code == "model_not_found"


def test_streamed_provider_error_raises_in_the_sdk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="mock/mock-1", messages=USER, stream=True,
        extra_body=mock(text="abcdefghijkl", fail_after_tokens=2, fail_with="rate_limit"))
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "abcdefgh"
    assert caught.value.body == {"message": "mock provider: rate limit exceeded",
                                 "type": "requests", "param": None,
                                 "code": "rate_limit_exceeded"}


@pytest.mark.parametrize(("fail_with", "error_class", "status", "code"), [
    ("server_error", openai.InternalServerError, 502, "provider_error"),
    ("rate_limit", openai.RateLimitError, 429, "rate_limit_exceeded"),
    ("content_filter", openai.BadRequestError, 400, "content_filter"),
])
def test_non_streamed_failure_statuses(client: openai.OpenAI, stack: Stack,
                                       spool: requests.Session, fail_with: str,
                                       error_class: type[openai.APIStatusError], status: int,
                                       code: str) -> None:
    with pytest.raises(error_class) as caught:
        client.chat.completions.create(
            model="mock/mock-1", messages=USER,
            extra_body=mock(text="abcdefgh", fail_after_tokens=1, fail_with=fail_with))
    assert (caught.value.status_code, caught.value.code) == (status, code)
    gen_id = caught.value.response.headers["Spool-Generation-Id"]
    assert generation(stack, spool, gen_id)["status"] == "failed"


def test_cancel_through_spool_ends_the_sdk_stream_with_an_error(
        client: openai.OpenAI, stack: Stack, spool: requests.Session) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="mock/mock-1", messages=USER, stream=True,
        extra_body=mock(text="x" * 400, tokens_per_second=40))
    gen_id = raw.headers["Spool-Generation-Id"]
    stream = raw.parse()
    next(stream)  # the role chunk
    assert next(stream).choices[0].delta.content == "xxxx"
    resp = spool.post(stack.url(f"/v1/generations/{gen_id}/cancel"), timeout=10)
    assert resp.status_code == 202
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert (caught.value.type, caught.value.code) == ("cancelled", "user")
    assert generation(stack, spool, gen_id)["status"] == "cancelled"


def _find_generation(stack: Stack, marker: str) -> str:
    """The id of the generation whose metadata `user` is `marker` (it has no response yet)."""
    keys = Keys(stack.namespace)
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        def scan() -> str | None:
            for key in client.scan_iter(f"{stack.namespace}:gen:*:rec"):
                if marker in (client.hget(key, "metadata") or ""):
                    gen_id = key.split("{")[1].split("}")[0]
                    assert keys.record(gen_id) == key
                    return gen_id
            return None
        found: str = wait_until(scan, 10, what="the generation record")
        return found
    finally:
        client.close()


def test_non_streamed_cancel_is_409_and_not_retried(client: openai.OpenAI, stack: Stack,
                                                     spool: requests.Session) -> None:
    marker = secrets.token_hex(8)
    outcome: dict[str, Any] = {}

    def call() -> None:
        retrying = client.with_options(max_retries=2)  # x-should-retry: false must win
        try:
            retrying.chat.completions.create(model="mock/mock-1", messages=USER, user=marker,
                                             extra_body=mock(text="y" * 400, tokens_per_second=40))
        except openai.APIStatusError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    gen_id = _find_generation(stack, marker)
    wait_until(lambda: generation(stack, spool, gen_id)["text"], 10, what="first text")
    assert spool.post(stack.url(f"/v1/generations/{gen_id}/cancel"), timeout=10).status_code == 202
    thread.join(30)
    error = outcome["error"]
    assert isinstance(error, openai.ConflictError)
    assert (error.status_code, error.type, error.code) == (409, "cancelled", "user")
    assert error.response.headers["Spool-Generation-Id"] == gen_id
    assert error.response.headers["x-should-retry"] == "false"


def test_non_streamed_timeout_is_504_and_the_generation_keeps_running(
        client: openai.OpenAI, stack: Stack, spool: requests.Session) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="mock/mock-1", messages=USER,
                                       extra_body=mock(text="late", ttft_ms=CHAT_TIMEOUT_S * 1000
                                                       + 1000))
    assert (caught.value.status_code, caught.value.code) == (504, "timeout")
    gen_id = caught.value.response.headers["Spool-Generation-Id"]
    assert gen_id in caught.value.message
    wait_until(lambda: generation(stack, spool, gen_id)["status"] == "completed", 10,
               what="the generation to complete")
    assert generation(stack, spool, gen_id)["text"] == "late"


def test_cut_stream_resumes_through_the_events_endpoint(client: openai.OpenAI, stack: Stack,
                                                        spool: requests.Session) -> None:
    full = "Resumable 🙂 streams: " + " ".join(f"w{i}—é" for i in range(60))
    raw = client.chat.completions.with_raw_response.create(
        model="mock/mock-1", messages=USER, stream=True,
        extra_body=mock(text=full, tokens_per_second=60))
    gen_id = raw.headers["Spool-Generation-Id"]
    stream = raw.parse()
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if len(received) >= 20:
            break
    stream.close()  # the client goes away mid-answer
    time.sleep(0.5)
    assert generation(stack, spool, gen_id)["status"] == "in_progress"  # not cancelled
    offset = utf16_len(received)
    result = read_stream(stack.url(f"/v1/generations/{gen_id}/events?offset={offset}"),
                         dict(spool.headers))  # type: ignore[arg-type]
    assert result.status == 200
    rest = "".join(e.data["text"] for e in result.events if e.event == "delta")
    assert received + rest == full
    assert result.events[-1].event == "done"
    record = generation(stack, spool, gen_id)
    assert record["status"] == "completed" and record["text"] == full
