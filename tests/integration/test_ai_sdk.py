"""The AI SDK facade driven by the real `ai` package's DefaultChatTransport (Node) against
real gunicorn + worker processes: send, drop mid-answer, reconnect, replay, tool calls;
plus the wire details (errors, cancel, 204, tenants) read with plain HTTP.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests

from spool.ids import is_generation_id
from tests.conftest import FAST_MOCK
from tests.harness import RedisServer, Stack, running_stack, wait_until
from tests.nodejs import run_script  # skips (fails under CI) without Node.js

KEY = "sk-aisdk-" + secrets.token_hex(8)
OTHER_KEY = "sk-aisdk-other-" + secrets.token_hex(8)
TEXT = "Hello, 世界! 🙂 e\u0301 line\nbreak — \"quoted\" done."
LONG_TEXT = " ".join(f"word{i}" for i in range(60)) + " end."
CHAT = "/v1/ai-sdk/chat"
CALLS = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}},
         {"name": "get_time", "arguments": {"zone": "Europe/Paris"}}]


@pytest.fixture(scope="module")
def stack(redis_server: Any) -> Iterator[Stack]:
    with running_stack(redis_server.url, {
            "SPOOL_API_KEYS": f"acme:{KEY},globex:{OTHER_KEY}",
            "SPOOL_SECRET_KEY": secrets.token_hex(32),
            "SPOOL_PING_INTERVAL_S": "0.2",  # keep-alive comments must not trip the SDK's parser
        }, webs=2) as shared:  # a reconnect may land on another web process
        yield shared


@pytest.fixture(scope="module")
def spool(stack: Stack) -> Iterator[requests.Session]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {KEY}"
    yield session
    session.close()


def chat_id() -> str:
    return "chat-" + secrets.token_hex(6)


def transport(stack: Stack, chat: str, mock: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A config for tests/js/transport.mjs: the transport as an app would build it."""
    return {"api": stack.url(CHAT), "chatId": chat,
            "headers": {"Authorization": f"Bearer {KEY}"},
            "body": {"mock": {**FAST_MOCK, **mock}}, **extra}


def record(stack: Stack, spool: requests.Session, gen_id: str) -> dict[str, Any]:
    resp = spool.get(stack.url(f"/v1/generations/{gen_id}"), timeout=10)
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return found


def ui_message_body(chat: str, text: str = "hello", **spool_fields: Any) -> dict[str, Any]:
    """What DefaultChatTransport posts for a first message, plus Spool's fields."""
    return {"id": chat, "trigger": "submit-message", "messageId": None,
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}],
            **spool_fields}


def read_chunks(source: requests.Response | Iterator[bytes]) -> list[Any]:
    """Every `data:` line of a UI message stream (or of the rest of its lines), decoded
    ([DONE] as the string)."""
    lines = source.iter_lines() if isinstance(source, requests.Response) else source
    chunks: list[Any] = []
    for line in lines:
        if line.startswith(b"data: "):
            payload = line[len(b"data: "):]
            chunks.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return chunks


def text_of_chunks(chunks: list[Any]) -> str:
    return "".join(c["delta"] for c in chunks if isinstance(c, dict) and c["type"] == "text-delta")


def test_send_messages_streams_one_ui_message(stack: Stack, spool: requests.Session) -> None:
    out = run_script("transport.mjs", transport(stack, chat_id(), {"text": TEXT}))
    chunks = out["chunks"]
    gen_id = chunks[0]["messageId"]
    assert is_generation_id(gen_id)
    types = [chunk["type"] for chunk in chunks]
    deltas = types.count("text-delta")
    assert deltas >= 2
    assert types == ["start", "start-step", "text-start", *["text-delta"] * deltas, "text-end",
                     "finish-step", "finish"]
    assert chunks[-1] == {"type": "finish", "finishReason": "stop"}
    assert {chunk["id"] for chunk in chunks if chunk["type"].startswith("text-")} == {"text-0"}
    assert out["message"]["id"] == gen_id
    assert out["message"]["parts"] == [{"type": "step-start"},
                                       {"type": "text", "text": TEXT, "state": "done"}]
    assert out["afterEnd"] is None  # reconnectToStream after the end: nothing to resume
    assert record(stack, spool, gen_id)["text"] == TEXT


def test_drop_mid_answer_then_reconnect_replays_exactly_the_answer(
        stack: Stack, spool: requests.Session) -> None:
    # Sent to web 0, resumed through web 1: the chat's state is in Redis, not a process.
    config = transport(stack, chat_id(), {"text": LONG_TEXT, "tokens_per_second": 25},
                       dropAfterDeltas=3, resumeApi=stack.url(CHAT, web=1))
    out = run_script("transport.mjs", config)
    dropped = out["dropped"]
    assert dropped["deltas"] == 3
    assert LONG_TEXT.startswith(dropped["text"]) and len(dropped["text"]) < len(LONG_TEXT)
    message = out["message"]
    # The replay rebuilt the whole message: no text lost, none doubled.
    assert message["parts"] == [{"type": "step-start"},
                                {"type": "text", "text": LONG_TEXT, "state": "done"}]
    assert out["chunks"][0] == {"type": "start", "messageId": message["id"]}
    assert out["afterEnd"] is None
    # Dropping the POST's connection did not cancel the generation.
    found = record(stack, spool, message["id"])
    assert found["status"] == "completed" and found["text"] == LONG_TEXT


def test_tool_calls_stream_as_tool_input_parts(stack: Stack, spool: requests.Session) -> None:
    out = run_script("transport.mjs", transport(stack, chat_id(),
                                                {"text": "Checking.", "tool_calls": CALLS}))
    chunks = out["chunks"]
    tool_chunks = [c for c in chunks if c["type"].startswith("tool-")]
    assert tool_chunks == [
        {"type": "tool-input-start", "toolCallId": "call_mock_0", "toolName": "get_weather"},
        {"type": "tool-input-delta", "toolCallId": "call_mock_0",
         "inputTextDelta": '{"city":"Paris","unit":"°C"}'},
        {"type": "tool-input-available", "toolCallId": "call_mock_0",
         "toolName": "get_weather", "input": CALLS[0]["arguments"]},
        {"type": "tool-input-start", "toolCallId": "call_mock_1", "toolName": "get_time"},
        {"type": "tool-input-delta", "toolCallId": "call_mock_1",
         "inputTextDelta": '{"zone":"Europe/Paris"}'},
        {"type": "tool-input-available", "toolCallId": "call_mock_1",
         "toolName": "get_time", "input": CALLS[1]["arguments"]},
    ]
    types = [c["type"] for c in chunks]
    assert types.index("text-end") < types.index("tool-input-start")  # text closed first
    assert chunks[-1] == {"type": "finish", "finishReason": "tool-calls"}
    parts = out["message"]["parts"]
    assert parts[1] == {"type": "text", "text": "Checking.", "state": "done"}
    tools = [p for p in parts if p["type"].startswith("tool-")]
    assert [(p["type"], p["toolCallId"], p["state"], p["input"]) for p in tools] == [
        ("tool-get_weather", "call_mock_0", "input-available", CALLS[0]["arguments"]),
        ("tool-get_time", "call_mock_1", "input-available", CALLS[1]["arguments"]),
    ]


def test_tool_results_and_history_reach_the_model(stack: Stack, spool: requests.Session) -> None:
    """A follow-up turn carrying a tool part with its output: the history is translated
    (the mock answers by quoting the last user message, so that arrives intact)."""
    body = {"id": chat_id(), "trigger": "submit-message", "messages": [
        {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Weather?"}]},
        {"id": "a1", "role": "assistant", "parts": [
            {"type": "step-start"},
            {"type": "tool-get_weather", "toolCallId": "call_1", "state": "output-available",
             "input": {"city": "Paris"}, "output": {"celsius": 21}},
            {"type": "step-start"},
            {"type": "text", "text": "It is 21 °C.", "state": "done"}]},
        {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "Thanks, and Rome?"}]},
    ], "mock": FAST_MOCK}
    with spool.post(stack.url(CHAT), json=body, stream=True, timeout=30) as resp:
        assert resp.status_code == 200, resp.text
        chunks = read_chunks(resp)
    assert "“Thanks, and Rome?”" in text_of_chunks(chunks)
    assert chunks[-1] == "[DONE]"


def test_cancel_route_stops_the_answer_with_abort(stack: Stack, spool: requests.Session) -> None:
    chat = chat_id()
    body = ui_message_body(chat, mock={**FAST_MOCK, "text": LONG_TEXT, "tokens_per_second": 20})
    with spool.post(stack.url(CHAT), json=body, stream=True, timeout=30) as resp:
        assert resp.headers["x-vercel-ai-ui-message-stream"] == "v1"
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        gen_id = resp.headers["Spool-Generation-Id"]
        chunks = []
        lines = resp.iter_lines()
        for line in lines:  # up to the first text delta: the answer is under way
            if line:
                chunks.append(orjson.loads(line.removeprefix(b"data: ")))
            if chunks and chunks[-1]["type"] == "text-delta":
                break
        assert chunks[0] == {"type": "start", "messageId": gen_id}
        # The stream counts as a reader of the generation, as an SSE reader does.
        wait_until(lambda: record(stack, spool, gen_id)["readers"] == 1, 10)
        cancel = spool.post(stack.url(f"/v1/generations/{gen_id}/cancel"), timeout=10)
        assert cancel.status_code == 202
        chunks += read_chunks(lines)
    assert chunks[-3:] == [{"type": "text-end", "id": "text-0"},
                           {"type": "abort", "reason": "user"}, "[DONE]"]
    streamed = text_of_chunks(chunks)
    assert len(streamed) < len(LONG_TEXT)
    assert streamed == record(stack, spool, gen_id)["text"]  # every token up to the stop
    assert spool.get(stack.url(f"{CHAT}/{chat}/stream"), timeout=10).status_code == 204


def test_a_reader_keeps_an_abandon_after_s_answer_alive(stack: Stack,
                                                        spool: requests.Session) -> None:
    """`abandon_after_s` (opt-in) counts AI SDK streams as readers: reading keeps the answer
    going past the limit; once nobody reads, it is abandoned."""
    chat = chat_id()
    body = ui_message_body(chat, mock={**FAST_MOCK, "text": LONG_TEXT, "tokens_per_second": 10},
                           abandon_after_s=1)
    with spool.post(stack.url(CHAT), json=body, stream=True, timeout=30) as resp:
        gen_id = resp.headers["Spool-Generation-Id"]
        deadline = time.monotonic() + 3  # three times the limit
        for _line in resp.iter_lines():
            if time.monotonic() > deadline:
                break
        assert record(stack, spool, gen_id)["status"] == "in_progress"
    wait_until(lambda: record(stack, spool, gen_id)["status"] == "cancelled", 15,
               what="the unwatched answer to be abandoned")
    assert record(stack, spool, gen_id)["finish_reason"] == "abandoned"


def test_failed_generation_ends_with_an_error_chunk(stack: Stack,
                                                    spool: requests.Session) -> None:
    body = ui_message_body(chat_id(), mock={**FAST_MOCK, "text": TEXT, "fail_after_tokens": 2})
    with spool.post(stack.url(CHAT), json=body, stream=True, timeout=30) as resp:
        chunks = read_chunks(resp)
    assert chunks[-5:] == [
        {"type": "text-end", "id": "text-0"},
        {"type": "error", "errorText": chunks[-4]["errorText"]},
        {"type": "finish-step"}, {"type": "finish", "finishReason": "error"}, "[DONE]"]
    assert chunks[-4]["errorText"]


def test_resume_is_204_without_a_generation_and_per_tenant(
        stack: Stack, spool: requests.Session) -> None:
    chat = chat_id()
    assert spool.get(stack.url(f"{CHAT}/{chat}/stream"), timeout=10).status_code == 204
    body = ui_message_body(chat, mock={**FAST_MOCK, "text": LONG_TEXT, "tokens_per_second": 20})
    with spool.post(stack.url(CHAT), json=body, stream=True, timeout=30) as resp:
        gen_id = resp.headers["Spool-Generation-Id"]
        # Another tenant's key sees no generation for the same chat id; no key is a 401.
        other = requests.get(stack.url(f"{CHAT}/{chat}/stream"), timeout=10,
                             headers={"Authorization": f"Bearer {OTHER_KEY}"})
        assert other.status_code == 204
        anonymous = requests.get(stack.url(f"{CHAT}/{chat}/stream"), timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["type"] == "unauthorized"
        spool.post(stack.url(f"/v1/generations/{gen_id}/cancel"), timeout=10)
    wait_until(lambda: record(stack, spool, gen_id)["status"] == "cancelled", 10)
    assert spool.get(stack.url(f"{CHAT}/{chat}/stream"), timeout=10).status_code == 204


@pytest.mark.parametrize("body,param", [
    ({"messages": []}, "id"),
    ({"id": "c", "messages": []}, "messages"),
    ({"id": "c", "messages": [{"role": "tool", "parts": []}]}, "messages.0.role"),
    ({"id": "c", "messages": [{"role": "user", "parts": "hi"}]}, "messages.0.parts"),
    ({"id": "c", "messages": [{"role": "user", "parts": [{"type": "file", "url": "x",
                                                          "mediaType": "image/png"}]}]},
     "messages.0.parts.0"),
    ({"id": "c", "trigger": "resume", "messages": []}, "trigger"),
    ({**ui_message_body("c"), "max_tokens": "5"}, "max_tokens"),
    ({**ui_message_body("c"), "stream": True}, "stream"),
    ({**ui_message_body("c"), "provider": "nope"}, "provider"),
    ({"id": "c", "messages": [
        {"role": "user", "parts": [{"type": "text", "text": "a"}]},
        {"role": "user", "parts": [{"type": "text", "text": "b" * 500_001}]}]}, "messages.1"),
])
def test_bad_requests_are_400_naming_the_field(stack: Stack, spool: requests.Session,
                                               body: dict[str, Any], param: str) -> None:
    resp = spool.post(stack.url(CHAT), json=body, timeout=10)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request" and error["param"] == param, error


def test_same_limits_as_every_route(make_stack: Any) -> None:
    """SPOOL_MAX_ACTIVE counts AI SDK answers too: a second one is a 429 with Retry-After."""
    limited = make_stack(env={"SPOOL_API_KEYS": f"acme:{KEY}", "SPOOL_MAX_ACTIVE": "1",
                              "SPOOL_SECRET_KEY": secrets.token_hex(32)})
    headers = {"Authorization": f"Bearer {KEY}"}
    slow = {**FAST_MOCK, "text": LONG_TEXT, "tokens_per_second": 10}
    with requests.post(limited.url(CHAT), json=ui_message_body(chat_id(), mock=slow),
                       headers=headers, stream=True, timeout=30) as first:
        assert first.status_code == 200
        second = requests.post(limited.url(CHAT), json=ui_message_body(chat_id(), mock=slow),
                               headers=headers, timeout=10)
        assert second.status_code == 429, second.text
        assert second.headers["Retry-After"]
        assert second.json()["error"]["type"] == "rate_limited"
        requests.post(limited.url(f"/v1/generations/{first.headers['Spool-Generation-Id']}"
                                  "/cancel"), headers=headers, timeout=10)


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    """A private Redis that keeps its data across a restart (append-only file)."""
    server = RedisServer(extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_redis_restart_mid_answer_then_resume(durable_redis: RedisServer) -> None:
    """Redis goes away under a streaming answer: the POST's stream ends without [DONE]
    (an `error` chunk saying so, unless the relay rode it out), the worker finishes the
    answer once Redis is back, and the resume route replays exactly the whole of it."""
    stack = Stack(durable_redis.url)
    try:
        stack.start_web()
        stack.start_worker()
        chat = chat_id()
        body = ui_message_body(chat, mock={**FAST_MOCK, "text": LONG_TEXT,
                                           "tokens_per_second": 15})  # ~7 s
        with requests.post(stack.url(CHAT), json=body, stream=True, timeout=60) as resp:
            gen_id = resp.headers["Spool-Generation-Id"]
            lines = resp.iter_lines()
            next(line for line in lines if b"text-delta" in line)
            durable_redis.restart(down_s=1.0)
            rest = read_chunks(lines)
        if rest[-1] != "[DONE]":
            assert rest[-1]["type"] == "error" and gen_id in rest[-1]["errorText"], rest[-1]
        # Still in progress: the resume route replays it from the start, then follows it.
        with requests.get(stack.url(f"{CHAT}/{chat}/stream"), stream=True, timeout=60) as again:
            assert again.status_code == 200
            replay = read_chunks(again)
        assert replay[0] == {"type": "start", "messageId": gen_id}
        assert text_of_chunks(replay) == LONG_TEXT
        assert replay[-2:] == [{"type": "finish", "finishReason": "stop"}, "[DONE]"]
        assert requests.get(stack.url(f"{CHAT}/{chat}/stream"), timeout=10).status_code == 204
    finally:
        stack.close()


@pytest.mark.slow
def test_web_process_killed_mid_answer_then_resume_elsewhere(make_stack: Any) -> None:
    """The web process streaming the POST dies (SIGKILL); the reload lands on another one,
    which replays the whole answer: nothing about the chat lived in the dead process."""
    stack = make_stack(webs=2)
    chat = chat_id()
    body = ui_message_body(chat, mock={**FAST_MOCK, "text": LONG_TEXT, "tokens_per_second": 30})
    with requests.post(stack.url(CHAT), json=body, stream=True, timeout=30) as resp:
        gen_id = resp.headers["Spool-Generation-Id"]
        next(line for line in resp.iter_lines() if b"text-delta" in line)
        stack.webs[0].kill()
    with requests.get(stack.url(f"{CHAT}/{chat}/stream", web=1), stream=True, timeout=60) as again:
        assert again.status_code == 200
        replay = read_chunks(again)
    assert replay[0] == {"type": "start", "messageId": gen_id}
    assert text_of_chunks(replay) == LONG_TEXT
    assert replay[-1] == "[DONE]"
