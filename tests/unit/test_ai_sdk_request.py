"""UI messages (the AI SDK's, with parts) → Spool messages."""

from __future__ import annotations

from typing import Any

import pytest

from webapp.errors import ApiError
from webapp.facades.ai_sdk_request import client_param, translate, translate_messages


def user(text: str) -> dict[str, Any]:
    return {"id": "u", "role": "user", "parts": [{"type": "text", "text": text}]}


def test_transport_fields_out_spool_fields_through() -> None:
    body = {"id": "chat-1", "trigger": "submit-message", "messageId": None,
            "messages": [user("hi")], "provider": "mock", "max_tokens": 5,
            "mock": {"text": "x"}}
    request = translate(body)
    assert request.chat_id == "chat-1"
    assert request.generation == {"provider": "mock", "max_tokens": 5, "mock": {"text": "x"},
                                  "messages": [{"role": "user", "content": "hi"}]}


def test_text_parts_joined_and_non_model_parts_dropped() -> None:
    messages, origins = translate_messages([
        {"role": "system", "parts": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "text": "a"}, {"type": "data-x", "data": 1},
                                   {"type": "text", "text": "b"}]},
        {"role": "assistant", "parts": [{"type": "step-start"},
                                        {"type": "reasoning", "text": "hmm"},
                                        {"type": "source-url", "sourceId": "s", "url": "u"},
                                        {"type": "text", "text": "ok"}]},
    ])
    assert messages == [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "a\nb"},
                        {"role": "assistant", "content": "ok"}]
    assert origins == [0, 1, 2]


def test_assistant_steps_with_tool_calls_and_results() -> None:
    messages, origins = translate_messages([user("weather?"), {"role": "assistant", "parts": [
        {"type": "step-start"},
        {"type": "text", "text": "Checking."},
        {"type": "tool-get_weather", "toolCallId": "c1", "state": "output-available",
         "input": {"city": "Paris"}, "output": {"celsius": 21}},
        {"type": "dynamic-tool", "toolName": "lookup", "toolCallId": "c2",
         "state": "output-error", "input": {}, "errorText": "boom"},
        {"type": "tool-search", "toolCallId": "c3", "state": "output-denied", "input": {"q": 1},
         "approval": {"id": "a", "approved": False, "reason": "no"}},
        {"type": "tool-partial", "toolCallId": "c4", "state": "input-streaming"},
        {"type": "tool-pending", "toolCallId": "c5", "state": "input-available", "input": {}},
        {"type": "tool-ask", "toolCallId": "c6", "state": "approval-requested", "input": {},
         "approval": {"id": "a6"}},
        {"type": "tool-refused", "toolCallId": "c7", "state": "approval-responded",
         "input": {}, "approval": {"id": "a7", "approved": False}},
        {"type": "step-start"},
        {"type": "text", "text": "21 °C."},
    ]}])
    call = {"type": "function"}
    assert messages[1:] == [
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "c1", **call, "function": {"name": "get_weather",
                                              "arguments": '{"city":"Paris"}'}},
            {"id": "c2", **call, "function": {"name": "lookup", "arguments": "{}"}},
            {"id": "c3", **call, "function": {"name": "search", "arguments": '{"q":1}'}},
            {"id": "c7", **call, "function": {"name": "refused", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"celsius":21}'},
        {"role": "tool", "tool_call_id": "c2", "content": "boom"},
        {"role": "tool", "tool_call_id": "c3", "content": "The tool call was denied: no"},
        {"role": "tool", "tool_call_id": "c7", "content": "The tool call was denied"},
        {"role": "assistant", "content": "21 °C."},
    ]
    assert origins == [0, 1, 1, 1, 1, 1, 1]


def test_call_without_text_has_null_content_and_string_output_stays_a_string() -> None:
    messages, _ = translate_messages([{"role": "assistant", "parts": [
        {"type": "tool-echo", "toolCallId": "c", "state": "output-available",
         "input": {"s": "x"}, "output": "plain"}]}])
    assert messages[0]["content"] is None
    assert messages[1] == {"role": "tool", "tool_call_id": "c", "content": "plain"}


def test_text_after_a_call_in_the_same_step_starts_a_new_message() -> None:
    messages, _ = translate_messages([{"role": "assistant", "parts": [
        {"type": "tool-echo", "toolCallId": "c", "state": "output-available", "input": {},
         "output": "x"},
        {"type": "text", "text": "after"}]}])
    assert [m["role"] for m in messages] == ["assistant", "tool", "assistant"]
    assert messages[2] == {"role": "assistant", "content": "after"}


def test_a_message_of_unanswered_calls_only_is_left_out() -> None:
    messages, origins = translate_messages([user("a"), {"role": "assistant", "parts": [
        {"type": "step-start"},
        {"type": "tool-echo", "toolCallId": "c", "state": "input-available", "input": {}}]},
        user("b")])
    assert messages == [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert origins == [0, 2]


@pytest.mark.parametrize("body,param", [
    ({}, "id"),
    ({"id": 5, "messages": [user("x")]}, "id"),
    ({"id": "x" * 257, "messages": [user("x")]}, "id"),
    ({"id": "c", "messages": {}}, "messages"),
    ({"id": "c", "messages": [user("x")], "trigger": "resume-stream"}, "trigger"),
    ({"id": "c", "messages": [user("x")], "messageId": 3}, "messageId"),
    ({"id": "c", "messages": ["hi"]}, "messages.0"),
    ({"id": "c", "messages": [{"role": "tool", "parts": []}]}, "messages.0.role"),
    ({"id": "c", "messages": [{"role": "user"}]}, "messages.0.parts"),
    ({"id": "c", "messages": [{"role": "user", "parts": [3]}]}, "messages.0.parts.0"),
    ({"id": "c", "messages": [{"role": "user", "parts": [{"type": "text"}]}]},
     "messages.0.parts.0.text"),
    ({"id": "c", "messages": [{"role": "user", "parts": [{"type": "file"}]}]},
     "messages.0.parts.0"),
    ({"id": "c", "messages": [{"role": "user", "parts": [{"type": "video"}]}]},
     "messages.0.parts.0.type"),
    ({"id": "c", "messages": [{"role": "user", "parts": [
        {"type": "tool-x", "toolCallId": "c", "state": "input-available"}]}]},
     "messages.0.parts.0.type"),
    ({"id": "c", "messages": [{"role": "assistant", "parts": [
        {"type": "tool-x", "state": "output-available"}]}]}, "messages.0.parts.0.toolCallId"),
    ({"id": "c", "messages": [{"role": "assistant", "parts": [
        {"type": "tool-", "toolCallId": "c", "state": "output-error"}]}]},
     "messages.0.parts.0.type"),
    ({"id": "c", "messages": [{"role": "assistant", "parts": [
        {"type": "dynamic-tool", "toolCallId": "c", "state": "output-denied"}]}]},
     "messages.0.parts.0.toolName"),
    ({"id": "c", "messages": [{"role": "assistant", "parts": [
        {"type": "tool-x", "toolCallId": "c", "state": "weird"}]}]},
     "messages.0.parts.0.state"),
])
def test_malformed_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as caught:
        translate(body)
    assert caught.value.status == 400
    assert caught.value.param == param, caught.value.message


def test_core_params_point_at_the_ui_message() -> None:
    request = translate({"id": "c", "messages": [
        user("a"), {"role": "assistant", "parts": [
            {"type": "tool-x", "toolCallId": "c", "state": "output-available", "output": 1}]},
        user("b")]})
    assert request.origins == [0, 1, 1, 2]
    assert client_param("messages.3.content", request) == "messages.2"
    assert client_param("messages.2", request) == "messages.1"
    assert client_param("messages.99.role", request) == "messages"
    assert client_param("max_tokens", request) == "max_tokens"
    assert client_param(None, request) is None
