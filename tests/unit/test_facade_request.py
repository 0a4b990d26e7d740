"""Chat Completions request → Spool generation request."""

from __future__ import annotations

from typing import Any

import pytest

from spool.schemas import parse_generation_request
from webapp.facades.chat_request import FacadeError, core_param, split_model, translate

LIMIT = 32768
USER = [{"role": "user", "content": "hi"}]


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "mock/mock-1", "messages": USER, **fields}


def refused(payload: dict[str, Any], default: str = "mock") -> FacadeError:
    with pytest.raises(FacadeError) as caught:
        translate(payload, default)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    return caught.value


@pytest.mark.parametrize(("model", "expected"), [
    ("mock/mock-1", ("mock", "mock-1")),
    ("openai/gpt-4o", ("openai", "gpt-4o")),
    ("anthropic/claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5")),
    ("openai/meta-llama/Llama-3-8B", ("openai", "meta-llama/Llama-3-8B")),
    ("gpt-4o", ("anthropic", "gpt-4o")),  # no prefix: the default provider
    ("mock/", ("mock", None)),  # the provider's default model
])
def test_split_model(model: str, expected: tuple[str, str | None]) -> None:
    assert split_model(model, "anthropic") == expected


@pytest.mark.parametrize("model", ["azure/gpt-4o", "meta-llama/Llama-3-8B", "/x"])
def test_unknown_prefix_is_model_not_found(model: str) -> None:
    error = refused(body(model=model))
    assert (error.param, error.code) == ("model", "model_not_found")
    assert model in error.message


@pytest.mark.parametrize("model", [None, "", 5])
def test_missing_model(model: Any) -> None:
    payload = body()
    payload["model"] = model
    assert refused(payload).param == "model"


def test_plain_request_translates_and_validates() -> None:
    translated = translate(body(max_completion_tokens=50, max_tokens=9, temperature=0.5,
                                user="u-1", metadata={"k": "v"},
                                mock={"text": "x", "tokens_per_second": 0}), "mock")
    assert translated.generation == {
        "provider": "mock", "messages": USER, "model": "mock-1", "max_tokens": 50,
        "temperature": 0.5, "metadata": {"user": "u-1", "k": "v"},
        "mock": {"text": "x", "tokens_per_second": 0},
    }
    assert (translated.model, translated.stream, translated.include_usage) == (
        "mock/mock-1", False, False)
    assert translated.max_tokens_param == "max_completion_tokens"
    parse_generation_request(translated.generation, max_tokens_limit=LIMIT)


def test_max_tokens_alone_is_used() -> None:
    translated = translate(body(max_tokens=7), "mock")
    assert translated.generation["max_tokens"] == 7
    assert translated.max_tokens_param == "max_tokens"


def test_stream_flags() -> None:
    assert translate(body(stream=True), "mock").stream
    flags = translate(body(stream=True, stream_options={"include_usage": True}), "mock")
    assert (flags.stream, flags.include_usage) == (True, True)
    assert refused(body(stream="yes")).param == "stream"
    assert refused(body(stream_options={"include_usage": True})).param == "stream_options"
    assert refused(body(stream=True, stream_options={"include_usage": 1})).param == (
        "stream_options.include_usage")


def test_messages_roles_parts_and_echoed_fields() -> None:
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None, "refusal": None, "annotations": [], "audio": None,
         "function_call": None,
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42", "name": None},
    ]
    generation = translate(body(messages=messages), "mock").generation
    assert generation["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": None, "tool_calls": messages[2]["tool_calls"]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    parse_generation_request(generation, max_tokens_limit=LIMIT)


def test_image_parts_and_bad_roles_are_refused() -> None:
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
    error = refused(body(messages=[image]))
    assert (error.param, error.code) == ("messages[0].content[0]", "unsupported_content")
    assert refused(body(messages=[{"role": "function", "content": "x"}])).param == (
        "messages[0].role")
    assert refused(body(messages=None)).param == "messages"


def test_unknown_message_field_reaches_core_validation() -> None:
    generation = translate(body(messages=[{"role": "user", "content": "x", "bogus": 1}]),
                           "mock").generation
    assert generation["messages"][0]["bogus"] == 1  # the core refuses it by name


def test_tools_and_tool_choice() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"},
                                               "strict": True}}]
    generation = translate(body(tools=tools, tool_choice="auto"), "mock").generation
    assert generation["tools"] == [{"type": "function",
                                    "function": {"name": "f", "parameters": {"type": "object"}}}]
    parse_generation_request(generation, max_tokens_limit=LIMIT)
    assert "tools" not in translate(body(tools=tools, tool_choice="none"), "mock").generation
    named = {"type": "function", "function": {"name": "f"}}
    for choice in ("required", named):
        generation = translate(body(tools=tools, tool_choice=choice), "mock").generation
        assert generation["tool_choice"] == choice
        parse_generation_request(generation, max_tokens_limit=LIMIT)
    # Without tools there is nothing to choose from: not passed on.
    assert "tool_choice" not in translate(body(tool_choice="required"), "mock").generation


def test_ignored_off_valued_and_unknown_params() -> None:
    translate(body(top_p=0.3, seed=1, n=1, stop=None, logprobs=False, parallel_tool_calls=True),
              "mock")
    for name, value in (("n", 2), ("stop", ["\n"]), ("logprobs", True), ("audio", {})):
        error = refused(body(**{name: value}))
        assert (error.param, error.code) == (name, "unsupported_parameter")
    error = refused(body(frobnicate=1))
    assert error.message == "Unrecognized request argument supplied: frobnicate"
    assert error.code == "unknown_parameter"


def test_response_format() -> None:
    assert translate(body(response_format={"type": "json_object"}), "mock").generation[
        "response_format"] == {"type": "json_object"}
    assert refused(body(response_format={"type": "json_schema"})).param == "response_format"


def test_core_params_in_client_terms() -> None:
    translated = translate(body(max_completion_tokens=5), "mock")
    assert core_param("max_tokens", translated) == "max_completion_tokens"
    assert core_param("messages.0.content", translated) == "messages[0].content"
    assert core_param("tools.2.function.name", translated) == "tools[2].function.name"
    assert core_param("provider", translated) == "model"
    assert core_param(None, translated) is None


def test_split_model_knows_configured_names() -> None:
    names = ("mock", "openai", "anthropic", "gemini", "local", "claude-eu")
    assert split_model("local/Qwen/Qwen2.5-7B-Instruct", "mock", names) == (
        "local", "Qwen/Qwen2.5-7B-Instruct")
    assert split_model("claude-eu/", "mock", names) == ("claude-eu", None)
    assert split_model("llama3.2", "local", names) == ("local", "llama3.2")
    with pytest.raises(FacadeError) as caught:
        split_model("locl/llama3.2", "mock", names)
    assert caught.value.code == "model_not_found" and "local/" in caught.value.message
    translated = translate(body(model="local/llama3.2"), "mock", names)
    assert translated.generation["provider"] == "local"
    assert translated.generation["model"] == "llama3.2"
