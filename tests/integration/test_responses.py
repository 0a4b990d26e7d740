"""The Responses API facade driven by the official `openai` SDK against real gunicorn + worker.

`client.responses.create` streamed and not, background mode with
`responses.retrieve(id, stream=True, starting_after=N)` after a cut, cancel,
tool calls round-tripped through `function_call_output`, errors and limits.
The mock provider here; the fake OpenAI and Anthropic upstreams in
test_responses_providers.py.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
import redis
import requests

from tests.conftest import FAST_MOCK
from tests.harness import Stack, running_stack, wait_until

KEY = "sk-responses-" + secrets.token_hex(8)
OTHER_KEY = "sk-other-" + secrets.token_hex(8)
SECRET = secrets.token_hex(32)
CHAT_TIMEOUT_S = 3
TEXT = "Hello, 世界! 🙂 e\u0301 line\nbreak — \"quoted\" done."
LONG = " ".join(f"word{i}" for i in range(120))
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


@pytest.fixture(scope="module")
def stack(redis_server: Any) -> Iterator[Stack]:
    with running_stack(redis_server.url, {
            "SPOOL_API_KEYS": f"acme:{KEY},other:{OTHER_KEY}",
            "SPOOL_SECRET_KEY": SECRET,
            "SPOOL_CHAT_TIMEOUT_S": str(CHAT_TIMEOUT_S),
            "SPOOL_PING_INTERVAL_S": "0.2",
        }) as shared:
        yield shared


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    # No SDK retries: every request must start exactly one generation here.
    return openai.OpenAI(base_url=stack.url("/v1"), api_key=KEY, max_retries=0, timeout=30)


def mock(**options: Any) -> dict[str, Any]:
    return {"mock": {**FAST_MOCK, **options}}


def text_of(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_non_streamed_exact_text_and_usage(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(
        model="mock/mock-1", input="hello", instructions="Be brief.", metadata={"k": "v"},
        extra_body=mock(text=TEXT))
    gen_id = raw.headers["Spool-Generation-Id"]
    result = raw.parse()
    assert result.id == "resp_" + gen_id.removeprefix("gen_")
    assert result.object == "response" and result.status == "completed"
    assert result.model == "mock/mock-1" and result.instructions == "Be brief."
    assert result.metadata == {"k": "v"}
    assert result.output_text == TEXT
    [message] = result.output
    assert message.type == "message" and message.role == "assistant"
    assert message.status == "completed"
    assert result.usage is not None and result.usage.output_tokens > 0
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens
    assert result.error is None and result.incomplete_details is None
    again = client.responses.retrieve(result.id)
    assert again.model_dump() == result.model_dump()


def test_streamed_events_are_dense_and_exact(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="mock/mock-1", input="hi", stream=True,
                                     extra_body=mock(text=TEXT, chunk="char", ttft_ms=500))
    events = list(stream)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert text_of(events) == TEXT
    assert events[0].response.status == "queued"
    final = events[-1].response
    assert final.status == "completed" and final.output_text == TEXT
    # Every read of the same response numbers its events alike.
    replay = list(client.responses.retrieve(final.id, stream=True))
    assert [e.model_dump() for e in replay] == [e.model_dump() for e in events]


def test_background_resume_after_a_cut_gives_the_exact_rest(client: openai.OpenAI) -> None:
    created = client.responses.create(model="mock/mock-1", input="long", background=True,
                                      extra_body=mock(text=LONG, tokens_per_second=150))
    assert created.status == "queued" and created.background is True
    first = client.responses.retrieve(created.id, stream=True)
    received: list[Any] = []
    for event in first:
        received.append(event)
        if len(text_of(received)) > len(LONG) // 3:
            break
    first.close()  # the cut: the response goes on
    last = received[-1].sequence_number
    rest = list(client.responses.retrieve(created.id, stream=True, starting_after=last))
    assert rest[0].sequence_number == last + 1
    assert text_of(received) + text_of(rest) == LONG
    assert rest[-1].type == "response.completed"
    done = client.responses.retrieve(created.id)
    assert done.status == "completed" and done.output_text == LONG


def test_cancel_a_background_response(client: openai.OpenAI) -> None:
    created = client.responses.create(model="mock/mock-1", input="long", background=True,
                                      extra_body=mock(text=LONG, tokens_per_second=20))
    wait_until(lambda: client.responses.retrieve(created.id).output_text != "", timeout=10)
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    assert 0 < len(cancelled.output_text) < len(LONG)
    events = list(client.responses.retrieve(created.id, stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "cancelled"
    assert text_of(events) == cancelled.output_text
    assert client.responses.cancel(created.id).status == "cancelled"  # idempotent


def test_tool_call_round_trip(client: openai.OpenAI, stack: Stack) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}]
    first = client.responses.create(model="mock/mock-1", input="Weather in Paris?",
                                    tools=[WEATHER],  # type: ignore[list-item]
                                    extra_body=mock(text="Checking.", tool_calls=calls))
    assert first.status == "completed"
    message, call = first.output
    assert message.type == "message" and first.output_text == "Checking."
    assert call.type == "function_call" and call.name == "get_weather"
    assert orjson.loads(call.arguments) == calls[0]["arguments"]
    history: list[Any] = [
        {"role": "user", "content": "Weather in Paris?"}, *first.output,
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 °C, sunny"}]
    second = client.responses.with_raw_response.create(
        model="mock/mock-1", input=history, tools=[WEATHER],  # type: ignore[list-item]
        extra_body=mock(text="It is 18 °C."))
    assert second.parse().output_text == "It is 18 °C."
    record = requests.get(stack.url(f"/v1/generations/{second.headers['Spool-Generation-Id']}"),
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()
    assert record["status"] == "completed"


def test_streamed_tool_call_events(client: openai.OpenAI) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    events = list(client.responses.create(
        model="mock/mock-1", input="x", tools=[WEATHER], stream=True,  # type: ignore[list-item]
        extra_body=mock(text="", tool_calls=calls)))
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta",
                     "response.function_call_arguments.done", "response.output_item.done",
                     "response.completed"]
    assert orjson.loads(events[4].arguments) == {"city": "Paris"}
    assert events[-1].response.output[0].call_id == events[2].item.call_id


def test_length_is_incomplete_max_output_tokens(client: openai.OpenAI) -> None:
    result = client.responses.create(model="mock/mock-1", input="x", max_output_tokens=2,
                                     extra_body=mock(text="abcdefghijkl"))
    assert result.status == "incomplete"
    assert result.incomplete_details is not None
    assert result.incomplete_details.reason == "max_output_tokens"
    assert result.output_text == "abcdefgh"


def test_content_filter_is_incomplete(client: openai.OpenAI) -> None:
    events = list(client.responses.create(
        model="mock/mock-1", input="x", stream=True,
        extra_body=mock(text="abcdefgh", fail_after_tokens=1, fail_with="content_filter")))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "content_filter"


def test_provider_failure(client: openai.OpenAI) -> None:
    events = list(client.responses.create(
        model="mock/mock-1", input="x", stream=True,
        extra_body=mock(text="abcdefgh", fail_after_tokens=1, fail_with="server_error")))
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "failed"
    assert events[-1].response.error.code == "server_error"
    with pytest.raises(openai.APIStatusError) as failed:
        client.responses.create(model="mock/mock-1", input="x",
                                extra_body=mock(fail_after_tokens=0, fail_with="rate_limit"))
    assert failed.value.status_code == 429


@pytest.mark.parametrize("body,param", [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"previous_response_id": "resp_x"}, "previous_response_id"),
    ({"input": [{"type": "message", "role": "user",
                 "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0]"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}, "text.format"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "nosuch/model"}, "model"),
    ({"frobnicate": 1}, "frobnicate"),
])
def test_unsupported_is_a_400_naming_the_param(client: openai.OpenAI, body: dict[str, Any],
                                               param: str) -> None:
    fields = {"model": "mock/mock-1", "input": "x", **body}
    with pytest.raises(openai.BadRequestError) as refused:  # as sent, SDK checks aside
        client.responses.create(model=fields.pop("model"), input=fields.pop("input"),
                                extra_body=fields)
    assert refused.value.status_code == 400
    error = refused.value.body
    assert isinstance(error, dict) and error["param"] == param


def test_other_tenant_and_unknown_ids_are_404(client: openai.OpenAI, stack: Stack) -> None:
    created = client.responses.create(model="mock/mock-1", input="x", background=True,
                                      extra_body=mock(text="mine"))
    other = openai.OpenAI(base_url=stack.url("/v1"), api_key=OTHER_KEY, max_retries=0)
    for call in (lambda: other.responses.retrieve(created.id),
                 lambda: other.responses.cancel(created.id),
                 lambda: client.responses.retrieve("resp_nope")):
        with pytest.raises(openai.NotFoundError):
            call()
    bad = requests.get(stack.url(f"/v1/responses/{created.id}"), timeout=10)
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    wait_until(lambda: client.responses.retrieve(created.id).status == "completed", timeout=10)
    with pytest.raises(openai.ConflictError):
        client.responses.cancel(created.id)
    # Another tenant's items cannot be referenced; unknown ones neither.
    mine = client.responses.retrieve(created.id).output[0].id
    for key, ref in ((OTHER_KEY, mine), (KEY, mine[:-1] + "7"), (KEY, "msg_nope")):
        reader = openai.OpenAI(base_url=stack.url("/v1"), api_key=key, max_retries=0)
        with pytest.raises(openai.BadRequestError) as refused:
            reader.responses.create(model="mock/mock-1", input=[
                {"type": "item_reference", "id": ref}])
        assert isinstance(refused.value.body, dict)
        assert refused.value.body["param"] == "input[0].id"


def test_non_streamed_timeout_is_a_504_and_keeps_running(client: openai.OpenAI,
                                                         stack: Stack) -> None:
    raw = requests.post(stack.url("/v1/responses"), headers={"Authorization": f"Bearer {KEY}"},
                        json={"model": "mock/mock-1", "input": "x",
                              **mock(text=LONG, tokens_per_second=30)}, timeout=30)
    assert raw.status_code == 504 and raw.headers["x-should-retry"] == "false"
    gen_id = raw.headers["Spool-Generation-Id"]
    resp_id = "resp_" + gen_id.removeprefix("gen_")
    assert resp_id in raw.json()["error"]["message"]
    assert client.responses.retrieve(resp_id).status == "in_progress"
    client.responses.cancel(resp_id)


def test_disconnected_stream_keeps_running(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="mock/mock-1", input="x", stream=True,
                                     extra_body=mock(text=LONG, tokens_per_second=150))
    first = next(iter(stream))
    stream.close()
    resp_id = first.response.id
    deadline = time.monotonic() + 20
    while client.responses.retrieve(resp_id).status != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.responses.retrieve(resp_id).output_text == LONG


def test_the_sdk_stream_helper_accumulates_and_resumes(client: openai.OpenAI) -> None:
    with client.responses.stream(model="mock/mock-1", input="x", tools=[WEATHER],
                                 extra_body=mock(text=TEXT, tool_calls=[
                                     {"name": "get_weather", "arguments": {"city": "Oslo"}}]),
                                 ) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert deltas == TEXT and final.output_text == TEXT
    assert final.output[1].type == "function_call"
    assert orjson.loads(final.output[1].arguments) == {"city": "Oslo"}
    # The helper's resume form: the same response from a sequence number on.
    with client.responses.stream(response_id=final.id, starting_after=5) as resumed:
        events = list(resumed)
        again = resumed.get_final_response()
    assert events[0].sequence_number == 6
    assert again.output_text == TEXT


def test_every_read_is_the_same_bytes(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "mock/mock-1", "input": "x", "stream": True,
            **mock(text=TEXT, chunk="char", ttft_ms=500)}  # keep-alives while waiting

    def events(resp: requests.Response) -> list[bytes]:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        frames = [f for f in resp.content.split(b"\n\n") if f]
        return [f for f in frames if not f.startswith(b":")]  # keep-alive comments aside

    created = requests.post(stack.url("/v1/responses"), json=body, headers=auth, timeout=30)
    first = events(created)
    resp_id = "resp_" + created.headers["Spool-Generation-Id"].removeprefix("gen_")
    url = stack.url(f"/v1/responses/{resp_id}?stream=true")
    assert events(requests.get(url, headers=auth, timeout=30)) == first
    resumed = events(requests.get(f"{url}&starting_after=9", headers=auth, timeout=30))
    assert resumed == first[10:]
    assert all(f.startswith(b"event: response.") for f in first)
    done = requests.get(f"{url}&starting_after={len(first) - 1}", headers=auth, timeout=30)
    assert done.status_code == 200 and done.content == b""


def test_a_stream_reader_does_not_fetch_the_request(client: openai.OpenAI,
                                                    stack: Stack) -> None:
    """A crowd of readers of one response must not each read its (long) prompt."""
    prompt = "a long prompt " * 20_000  # ~280 KB in the record
    created = client.responses.create(model="mock/mock-1", input=prompt,
                                      extra_body=mock(text=TEXT))
    server = redis.Redis.from_url(stack.redis_url)
    try:
        before = server.info("stats")["total_net_output_bytes"]
        replay = list(client.responses.retrieve(created.id, stream=True))
        sent = server.info("stats")["total_net_output_bytes"] - before
    finally:
        server.close()
    assert text_of(replay) == TEXT and replay[-1].type == "response.completed"
    assert sent < len(prompt) // 4, f"{sent} bytes read from Redis for one stream"


def test_a_native_generation_streams_as_a_response(client: openai.OpenAI,
                                                   stack: Stack) -> None:
    """No facade echo in its record: the head is derived from the request."""
    resp = requests.post(stack.url("/v1/generations"), headers={"Authorization": f"Bearer {KEY}"},
                         json={"messages": [{"role": "user", "content": "hi"}], **mock(text=TEXT)},
                         timeout=30)
    assert resp.status_code == 202, resp.text
    resp_id = "resp_" + resp.json()["id"].removeprefix("gen_")
    wait_until(lambda: client.responses.retrieve(resp_id).status == "completed", timeout=10)
    events = list(client.responses.retrieve(resp_id, stream=True))
    assert text_of(events) == TEXT and events[-1].response.status == "completed"
    assert events[-1].response.model == client.responses.retrieve(resp_id).model
