"""API request → vendor request arguments (no network)."""

from __future__ import annotations

from typing import Any

from spool.schemas import GenerationRequest
from worker.providers._anthropic_request import request_params as anthropic_params
from worker.providers.openai import request_params as openai_params

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                      "parameters": {"type": "object",
                                                     "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "now"}},
]
CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
        {"id": "call_2", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}},
    ]},
    {"role": "tool", "content": "18C sunny", "tool_call_id": "call_1"},
    {"role": "tool", "content": "24C clear", "tool_call_id": "call_2"},
    {"role": "user", "content": "Thanks!"},
]


def api_request(**fields: Any) -> dict[str, Any]:
    """A request exactly as the runner hands it over (validated, then dumped)."""
    return GenerationRequest.model_validate(fields).model_dump()


def test_openai_params() -> None:
    request = api_request(messages=CONVERSATION, system="You are Spool.", max_tokens=50,
                          temperature=0.3, tools=TOOLS,
                          response_format={"type": "json_object"})
    params = openai_params(request, "gpt-default", compatible=False)
    assert params["model"] == "gpt-default"
    assert params["stream"] is True and params["stream_options"] == {"include_usage": True}
    assert params["max_completion_tokens"] == 50 and "max_tokens" not in params
    assert params["temperature"] == 0.3
    assert params["response_format"] == {"type": "json_object"}
    assert params["messages"][0] == {"role": "system", "content": "You are Spool."}
    assert params["messages"][1] == {"role": "system", "content": "Answer briefly."}
    assert params["messages"][3]["tool_calls"][1]["function"]["arguments"] == '{"city": "Rome"}'
    assert params["messages"][4] == {"role": "tool", "content": "18C sunny",
                                     "tool_call_id": "call_1"}
    assert params["tools"][1] == {"type": "function", "function": {"name": "now"}}


def test_openai_compatible_servers_get_max_tokens_and_no_optional_fields() -> None:
    request = api_request(messages=[{"role": "user", "content": "hi"}], model="llama3",
                          max_tokens=7, response_format={"type": "text"})
    params = openai_params(request, "gpt-default", compatible=True)
    assert params["model"] == "llama3" and params["max_tokens"] == 7
    for absent in ("max_completion_tokens", "temperature", "tools", "response_format"):
        assert absent not in params
    assert params["messages"] == [{"role": "user", "content": "hi"}]


def test_anthropic_params() -> None:
    request = api_request(messages=CONVERSATION, system="You are Spool.", max_tokens=50,
                          temperature=0.3, tools=TOOLS)
    params = anthropic_params(request, "claude-default")
    assert "temperature" not in params
    assert params["model"] == "claude-default" and params["max_tokens"] == 50
    assert params["stream"] is True
    assert params["system"] == "You are Spool.\n\nAnswer briefly."
    assert params["tools"] == [
        {"name": "get_weather", "description": "Weather now",
         "input_schema": TOOLS[0]["function"]["parameters"]},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert params["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather",
             "input": {"city": "Rome"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C sunny"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "24C clear"},
        ]},
        {"role": "user", "content": "Thanks!"},
    ]


def test_anthropic_minimal_request() -> None:
    request = api_request(messages=[{"role": "user", "content": "hi"}], model="claude-x")
    params = anthropic_params(request, "claude-default")
    assert params == {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}],
                      "max_tokens": request["max_tokens"], "stream": True}


def test_tool_choice_is_forwarded_to_openai_and_translated_for_anthropic() -> None:
    named = {"type": "function", "function": {"name": "now"}}
    expected_anthropic = {"auto": {"type": "auto"}, "required": {"type": "any"},
                          "none": {"type": "none"}}
    for choice in ("auto", "required", "none", named):
        request = api_request(messages=CONVERSATION, tools=TOOLS, tool_choice=choice)
        assert openai_params(request, "gpt-x", False)["tool_choice"] == choice
        sent = anthropic_params(request, "claude-x")["tool_choice"]
        if choice is named:
            assert sent == {"type": "tool", "name": "now"}
        else:
            assert sent == expected_anthropic[str(choice)]


def test_tool_choice_without_tools_is_not_sent() -> None:
    request = api_request(messages=CONVERSATION, tool_choice="required")
    assert "tool_choice" not in openai_params(request, "gpt-x", False)
    assert "tool_choice" not in anthropic_params(request, "claude-x")
