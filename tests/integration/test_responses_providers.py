"""The Responses API over real providers: the `openai` SDK → Spool → the loopback fake
OpenAI and Anthropic upstreams (the worker's real openai and anthropic SDKs).

Background mode for models whose vendor does not offer it: streamed and not,
resumed with `starting_after` after a cut, cancelled (the upstream closed),
tool calls round-tripped through `function_call_output` in each vendor's wire
format, usage and `incomplete_details`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from tests.fakeprovider import FakeProvider, matching, scenario
from tests.harness import Stack
from tests.integration.test_providers import boot, provider_env

VENDORS = ["openai", "anthropic"]
TEXT = "Hello, 世界! 🙂 e\u0301 line\nbreak — \"quoted\" done."
LONG = " ".join(f"word{i}" for i in range(150))
USAGE = {"input_tokens": 12, "output_tokens": 34}
WEATHER = {"type": "function", "name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    server = FakeProvider()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(redis_server: Any, fake: FakeProvider) -> Iterator[Stack]:
    # A generous idle timeout: on a loaded machine a paced answer may pause for a second.
    shared = boot(redis_server.url, provider_env(fake))
    yield shared
    shared.close()


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url("/v1"), api_key="unused", max_retries=0,
                         timeout=30)


@pytest.fixture(params=VENDORS)
def vendor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def prompt(**spec: Any) -> tuple[str, str]:
    """(a user input that makes the fake play `spec`, its unique key)."""
    key = uuid.uuid4().hex
    return scenario(key=key, **spec), key


def text_of(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_streamed_and_not_exact_text_and_usage(client: openai.OpenAI, fake: FakeProvider,
                                               vendor: str) -> None:
    spec = {"text": TEXT, "chunk_chars": 3, "usage": USAGE}
    events = list(client.responses.create(model=f"{vendor}/m", input=prompt(**spec)[0],
                                          stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert text_of(events) == TEXT
    final = events[-1].response
    assert events[-1].type == "response.completed" and final.output_text == TEXT
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 34)
    assert final.usage.total_tokens == 46
    text, key = prompt(**spec)
    result = client.responses.create(model=f"{vendor}/m", input=text, instructions="Be exact.")
    assert result.status == "completed" and result.output_text == TEXT
    [sent] = matching(fake.requests(), key)
    assert "Be exact." in orjson.dumps(sent["body"]).decode()  # instructions reached it


def test_background_cut_and_resume_exact(client: openai.OpenAI, vendor: str) -> None:
    created = client.responses.create(model=f"{vendor}/m", background=True,
                                      input=prompt(text=LONG, tps=150, ttft_ms=50)[0])
    assert created.status == "queued"
    received: list[Any] = []
    first = client.responses.retrieve(created.id, stream=True)
    for event in first:
        received.append(event)
        if len(text_of(received)) > len(LONG) // 4:
            break
    first.close()
    last = received[-1].sequence_number
    rest = list(client.responses.retrieve(created.id, stream=True, starting_after=last))
    assert rest[0].sequence_number == last + 1
    assert rest[-1].type == "response.completed", rest[-1].response.error
    assert text_of(received) + text_of(rest) == LONG
    assert rest[-1].type == "response.completed"
    assert client.responses.retrieve(created.id).output_text == LONG


def test_cancel_closes_the_upstream(client: openai.OpenAI, vendor: str) -> None:
    created = client.responses.create(model=f"{vendor}/m", background=True,
                                      input=prompt(text=LONG, tps=20, ttft_ms=0)[0])
    deadline = time.monotonic() + 10
    while not client.responses.retrieve(created.id).output_text:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    assert 0 < len(cancelled.output_text) < len(LONG)
    time.sleep(0.5)  # nothing more arrives once cancelled: the upstream is closed
    assert client.responses.retrieve(created.id).output_text == cancelled.output_text


def test_tool_call_round_trip(client: openai.OpenAI, fake: FakeProvider, vendor: str) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Paris", "note": "ünï ✓"}}]
    question, _ = prompt(text="Checking.", tool_calls=calls)
    first = client.responses.create(model=f"{vendor}/m", input=question,
                                    tools=[WEATHER])  # type: ignore[list-item]
    assert first.status == "completed"
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert orjson.loads(call.arguments) == calls[0]["arguments"]
    marker = uuid.uuid4().hex
    history: list[Any] = [{"role": "user", "content": question}, *first.output,
                          {"type": "function_call_output", "call_id": call.call_id,
                           "output": f"18 °C {marker}"}]
    second = client.responses.create(model=f"{vendor}/m", input=history,
                                     tools=[WEATHER])  # type: ignore[list-item]
    assert second.status == "completed"
    [sent] = matching(fake.requests(), marker)
    wire = orjson.dumps(sent["body"]).decode()
    assert call.call_id in wire and "Checking." in wire
    if vendor == "openai":
        messages = sent["body"]["messages"]
        assert messages[-2]["tool_calls"][0]["id"] == call.call_id
        assert messages[-1] == {"role": "tool", "tool_call_id": call.call_id,
                                "content": f"18 °C {marker}"}
    else:
        blocks = sent["body"]["messages"][-1]["content"]
        assert blocks[0]["type"] == "tool_result" and blocks[0]["tool_use_id"] == call.call_id


def test_length_is_incomplete(client: openai.OpenAI, vendor: str) -> None:
    result = client.responses.create(model=f"{vendor}/m",
                                     input=prompt(text="abcdef", finish_reason="length")[0])
    assert result.status == "incomplete" and result.output_text == "abcdef"
    assert result.incomplete_details is not None
    assert result.incomplete_details.reason == "max_output_tokens"


def test_a_steady_answer_outlasting_the_idle_timeout_completes(client: openai.OpenAI,
                                                               vendor: str) -> None:
    """The idle timeout is per silence, not per answer (a restarted gevent.Timeout kept
    its first deadline and cut every answer at SPOOL_IDLE_TIMEOUT_S)."""
    text = "0123456789" * 8  # 40 pieces at 20 a second: 2 s, past the 1.5 s idle timeout
    result = client.responses.create(model=f"{vendor}/m",
                                     input=prompt(text=text, chunk_chars=2, tps=20)[0])
    assert result.status == "completed", result.error
    assert result.output_text == text


def test_item_reference_sends_the_earlier_answer(client: openai.OpenAI, fake: FakeProvider,
                                                 vendor: str) -> None:
    answer = f"Paris is {uuid.uuid4().hex}."
    first = client.responses.create(model=f"{vendor}/m", input=prompt(text=answer)[0])
    [message] = first.output
    follow_up, key = prompt(text="Noted.")
    second = client.responses.create(model=f"{vendor}/m", input=[
        {"role": "user", "content": "Where?"},
        {"type": "item_reference", "id": message.id},
        {"role": "user", "content": follow_up}])
    assert second.output_text == "Noted."
    [sent] = matching(fake.requests(), key)
    assistant = [m for m in sent["body"]["messages"] if m["role"] == "assistant"]
    assert answer in orjson.dumps(assistant).decode()
