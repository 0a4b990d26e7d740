"""Request validation: strict types, bounds, and `param` naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from spool.schemas import RequestError, parse_generation_request

BASE = {"messages": [{"role": "user", "content": "hi"}]}


def parse(**changes: Any) -> Any:
    return parse_generation_request({**BASE, **changes}, max_tokens_limit=4096)


def error_of(payload: Any) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_generation_request(payload, max_tokens_limit=4096)
    return info.value


def test_defaults() -> None:
    request = parse()
    assert request.max_tokens == 1024
    assert request.buffer == "none" and request.priority == "interactive"
    assert request.mock.tokens_per_second == 40 and request.mock.ttft_ms == 300
    assert request.mock.chunk == "token" and request.mock.fail_with == "server_error"
    assert "abandon_after_s" not in request.model_fields_set


def test_explicit_null_abandon_is_distinguishable_from_absent() -> None:
    assert "abandon_after_s" in parse(abandon_after_s=None).model_fields_set


@pytest.mark.parametrize(("payload", "param"), [
    ([], None),
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({**BASE, "max_tokens": 0}, "max_tokens"),
    ({**BASE, "max_tokens": "5"}, "max_tokens"),
    ({**BASE, "max_tokens": 5000}, "max_tokens"),
    ({**BASE, "max_tokens": True}, "max_tokens"),
    ({**BASE, "temperature": 2.5}, "temperature"),
    ({**BASE, "provider": "cohere"}, "provider"),
    ({**BASE, "buffer": "line"}, "buffer"),
    ({**BASE, "priority": "urgent"}, "priority"),
    ({**BASE, "metadata": {str(i): "v" for i in range(17)}}, "metadata"),
    ({**BASE, "metadata": {"a": 1}}, "metadata.a"),
    ({**BASE, "mock": {"chunk": "word"}}, "mock.chunk"),
    ({**BASE, "mock": {"tokens_per_second": -1}}, "mock.tokens_per_second"),
    ({**BASE, "mock": {"fail_with": "boom"}}, "mock.fail_with"),
    ({**BASE, "response_format": {"type": "xml"}}, "response_format.type"),
    ({**BASE, "abandon_after_s": 0}, "abandon_after_s"),
    ({**BASE, "surprise": 1}, "surprise"),
    ({**BASE, "tools": [{"type": "function", "function": {"name": "bad name"}}]},
     "tools.0.function.name"),
])
def test_invalid_requests_name_the_field(payload: Any, param: str | None) -> None:
    err = error_of(payload)
    assert err.param == param
    assert err.message


def test_prefix_names_batch_rows() -> None:
    with pytest.raises(RequestError) as info:
        parse_generation_request({"messages": []}, max_tokens_limit=10, param_prefix="requests.7.")
    assert info.value.param == "requests.7.messages"


@pytest.mark.parametrize("choice", ["auto", "none", "required",
                                    {"type": "function", "function": {"name": "get_weather"}}])
def test_tool_choice_values(choice: Any) -> None:
    assert parse(tool_choice=choice).model_dump()["tool_choice"] == choice


@pytest.mark.parametrize("choice", ["any", {"type": "function"}, {"name": "f"}, 3])
def test_tool_choice_invalid(choice: Any) -> None:
    assert error_of({**BASE, "tool_choice": choice}).param is not None
