"""The mock provider: deterministic pieces for every option."""

from __future__ import annotations

from typing import Any

import pytest

from worker.providers.base import Finish, ProviderError, TextDelta, ToolCallDelta, Usage
from worker.providers.mock import MockProvider, split_chunks

FAST = {"tokens_per_second": 0, "ttft_ms": 0}


def pieces(mock: dict[str, Any], **request: Any) -> list[Any]:
    body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 1024,
            "mock": {**FAST, **mock}, **request}
    return list(MockProvider().open(body))


def text_of(items: list[Any]) -> str:
    return "".join(p.text for p in items if isinstance(p, TextDelta))


def test_same_options_same_stream() -> None:
    assert pieces({}) == pieces({})
    assert text_of(pieces({})).startswith("This is the mock provider answering “hello”")


def test_token_chunks_never_split_code_points() -> None:
    text = "🙂🙂🙂🙂🙂e\u0301世界"
    chunks = [p.text for p in pieces({"text": text}) if isinstance(p, TextDelta)]
    assert "".join(chunks) == text
    assert chunks == split_chunks(text, "token")
    assert all(len(c) <= 4 for c in chunks)


def test_char_chunks() -> None:
    chunks = [p.text for p in pieces({"text": "a🙂b", "chunk": "char"}) if isinstance(p, TextDelta)]
    assert chunks == ["a", "🙂", "b"]


def test_usage_and_finish() -> None:
    items = pieces({"text": "abcdefgh"})
    assert items[-2] == Usage(1, 2) and items[-1] == Finish("stop")


def test_max_tokens_truncates_with_length() -> None:
    items = pieces({"text": "abcdefghijkl"}, max_tokens=2)
    assert text_of(items) == "abcdefgh" and items[-1] == Finish("length")


@pytest.mark.parametrize(("fail_with", "error_type"), [
    ("rate_limit", "rate_limited"), ("server_error", "provider_error"),
    ("timeout", "timeout"), ("content_filter", "content_filter"),
])
def test_fail_after_tokens(fail_with: str, error_type: str) -> None:
    stream = iter(MockProvider().open({"messages": [], "mock": {
        **FAST, "text": "abcdefghijkl", "fail_after_tokens": 2, "fail_with": fail_with}}))
    assert [next(stream), next(stream)] == [TextDelta("abcd"), TextDelta("efgh")]
    with pytest.raises(ProviderError) as info:
        next(stream)
    assert info.value.type == error_type


def test_fail_before_first_token() -> None:
    with pytest.raises(ProviderError):
        pieces({"text": "abc", "fail_after_tokens": 0})


def test_tool_calls_come_in_fragments_after_text() -> None:
    items = pieces({"text": "ok", "tool_calls": [{"name": "f", "arguments": {"a": [1, 2]}}]})
    fragments = [p for p in items if isinstance(p, ToolCallDelta)]
    assert len(fragments) == 2 and fragments[0].name == "f"
    assert "".join(f.arguments for f in fragments) == '{"a":[1,2]}'
    assert items[-1] == Finish("tool_calls")
