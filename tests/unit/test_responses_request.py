"""Responses API request → Spool generation request (translation and refusals)."""

from __future__ import annotations

from typing import Any

import pytest

from webapp.facades.chat_request import FacadeError
from webapp.facades.responses_request import client_param, translate, translate_input

PROVIDERS = ("mock", "openai", "anthropic", "local")


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "mock/m", "input": "hi", **fields}


def refused(fields: dict[str, Any]) -> FacadeError:
    with pytest.raises(FacadeError) as caught:
        translate(fields, "mock", PROVIDERS)
    assert caught.value.status == 400
    return caught.value


def test_string_input_and_fields() -> None:
    request = translate(body(instructions="Be brief", max_output_tokens=7, temperature=0.5,
                             metadata={"a": "b"}, user="u1", top_p=0.9, store=False,
                             mock={"text": "x"}), "mock", PROVIDERS)
    assert request.generation == {
        "provider": "mock", "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "system": "Be brief", "max_tokens": 7, "temperature": 0.5,
        "metadata": {"user": "u1", "a": "b"}, "mock": {"text": "x"}}
    assert request.echo["model"] == "mock/m" and request.echo["top_p"] == 0.9
    assert not request.stream and not request.background


def test_named_provider_prefix_and_default() -> None:
    local = translate(body(model="local/Qwen/Qwen2.5"), "mock", PROVIDERS).generation
    assert (local["provider"], local["model"]) == ("local", "Qwen/Qwen2.5")
    bare = translate(body(model="gpt-x"), "openai", PROVIDERS).generation
    assert (bare["provider"], bare["model"]) == ("openai", "gpt-x")


def test_items_round_trip_an_sdk_history() -> None:
    items = [
        {"role": "developer", "content": "Rules"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
        {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": [],
                      "logprobs": []}]},
        {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "c1",
         "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{\"x\":1}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "two"}]},
    ]
    messages, origins = translate_input(items)
    assert messages == [
        {"role": "system", "content": "Rules"},
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "g",
                                                          "arguments": "{\"x\":1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]
    assert origins == [0, 1, 2, 5, 6]


def test_a_call_without_text_opens_an_assistant_turn() -> None:
    messages, _ = translate_input([{"role": "user", "content": "q"},
                                   {"type": "function_call", "call_id": "c", "name": "f",
                                    "arguments": "{}"}])
    assert messages[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}


def test_tools_and_tool_choice() -> None:
    tool = {"type": "function", "name": "f", "description": "d",
            "parameters": {"type": "object"}, "strict": True}
    request = translate(body(tools=[tool], tool_choice={"type": "function", "name": "f"}),
                        "mock", PROVIDERS)
    assert request.generation["tools"] == [{"type": "function", "function": {
        "name": "f", "description": "d", "parameters": {"type": "object"}}}]
    assert request.generation["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    none = translate(body(tools=[tool], tool_choice="none"), "mock", PROVIDERS)
    assert "tools" not in none.generation and none.echo["tool_choice"] == "none"


def test_json_mode_and_flags() -> None:
    request = translate(body(text={"format": {"type": "json_object"}}, stream=True,
                             background=True), "mock", PROVIDERS)
    assert request.generation["response_format"] == {"type": "json_object"}
    assert request.stream and request.background
    assert request.echo["text"] == {"format": {"type": "json_object"}}


@pytest.mark.parametrize("fields,param", [
    ({"input": []}, "input"),
    ({"input": 5}, "input"),
    ({"input": None}, "input"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}]},
     "input[0].content[0]"),
    ({"input": [{"role": "user", "content": "x", "extra": 1}]}, "input[0].extra"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
     "input[0].arguments"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"tools": [{"type": "file_search"}]}, "tools[0].type"),
    ({"tools": "f"}, "tools"),
    ({"tool_choice": {"type": "web_search"}}, "tool_choice"),
    ({"text": {"format": {"type": "json_schema"}}}, "text.format"),
    ({"stream": "yes"}, "stream"),
    ({"background": 1}, "background"),
    ({"previous_response_id": "resp_x"}, "previous_response_id"),
    ({"include": ["reasoning.encrypted_content"]}, "include"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"model": "nope/x"}, "model"),
    ({"frobnicate": True}, "frobnicate"),
])
def test_refusals_name_the_param(fields: dict[str, Any], param: str) -> None:
    assert refused(body(**fields)).param == param


def test_missing_input() -> None:
    assert refused({"model": "mock/m"}).param == "input"


def test_core_params_in_the_clients_terms() -> None:
    request = translate(body(input=[{"role": "user", "content": "a"},
                                    {"type": "function_call", "call_id": "c", "name": "f",
                                     "arguments": "{}"},
                                    {"type": "function_call_output", "call_id": "c",
                                     "output": "x"}]), "mock", PROVIDERS)
    assert client_param("messages.2.content", request) == "input[2]"
    assert client_param("messages", request) == "input"
    assert client_param("system", request) == "instructions"
    assert client_param("max_tokens", request) == "max_output_tokens"
    assert client_param("tools.0.function.name", request) == "tools[0].name"
    assert client_param("metadata", request) == "metadata"
    assert client_param(None, request) is None
