"""The facade's OpenAI wire formats, byte for byte."""

from __future__ import annotations

import orjson
import pytest

from webapp.facades.chat_format import (
    ChunkStream,
    cancelled_error,
    completion,
    completion_id,
    generation_error,
    openai_usage,
)
from webapp.facades.wire import DONE_LINE

GEN = "gen_AbCdEfGhIjKlMnOpQrStUv"
HEAD = (b'data: {"id":"chatcmpl-AbCdEfGhIjKlMnOpQrStUv","object":"chat.completion.chunk",'
        b'"created":1700000000,"model":"mock/mock-1","system_fingerprint":null,')


def stream(include_usage: bool = False) -> ChunkStream:
    return ChunkStream(GEN, 1_700_000_000, "mock/mock-1", include_usage)


def test_completion_id_keeps_the_generation_random_part() -> None:
    assert completion_id(GEN) == "chatcmpl-AbCdEfGhIjKlMnOpQrStUv"


def test_opening_chunk_bytes() -> None:
    assert stream().opening() == HEAD + (
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
        b'"logprobs":null,"finish_reason":null}]}\n\n')


def test_text_chunk_bytes_with_and_without_usage_field() -> None:
    choice = (b'"choices":[{"index":0,"delta":{"content":"h\xc3\xa9 \\"x\\"\\n\xf0\x9f\x99\x82"},'
              b'"logprobs":null,"finish_reason":null}]')
    assert stream().feed("delta", {"text": 'hé "x"\n🙂'}) == [HEAD + choice + b"}\n\n"]
    assert stream(True).feed("delta", {"text": 'hé "x"\n🙂'}) == [
        HEAD + choice + b',"usage":null}\n\n']


def test_empty_delta_and_status_events_send_nothing() -> None:
    chunks = stream()
    assert chunks.feed("delta", {"text": ""}) == []
    assert chunks.feed("status", {"status": "in_progress"}) == []
    assert chunks.feed("notice", {"message": "retrying"}) == []
    assert not chunks.ended


def test_tool_call_is_a_header_chunk_then_its_arguments() -> None:
    lines = stream().feed("tool_call", {"index": 1, "id": "call_9", "name": "get_weather",
                                        "arguments": {"city": "Paris", "days": 2}})
    assert lines == [
        HEAD + b'"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_9",'
        b'"type":"function","function":{"name":"get_weather","arguments":""}}]},'
        b'"logprobs":null,"finish_reason":null}]}\n\n',
        HEAD + b'"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":'
        b'{"arguments":"{\\"city\\":\\"Paris\\",\\"days\\":2}"}}]},"logprobs":null,'
        b'"finish_reason":null}]}\n\n',
    ]


def test_done_without_usage_option_is_finish_then_done() -> None:
    chunks = stream()
    lines = chunks.feed("done", {"finish_reason": "length",
                                 "usage": {"input_tokens": 3, "output_tokens": 5}})
    assert lines == [
        HEAD + b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}]}\n\n',
        b"data: [DONE]\n\n",
    ]
    assert chunks.ended
    assert chunks.feed("delta", {"text": "late"}) == []


def test_done_with_usage_option_adds_the_usage_chunk() -> None:
    lines = stream(True).feed("done", {"finish_reason": "stop",
                                       "usage": {"input_tokens": 3, "output_tokens": 5}})
    assert lines == [
        HEAD + b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],'
        b'"usage":null}\n\n',
        HEAD + b'"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,'
        b'"total_tokens":8}}\n\n',
        DONE_LINE,
    ]


@pytest.mark.parametrize("reason", ["stop", "length", "tool_calls", "content_filter"])
def test_openai_finish_reasons_pass_through(reason: str) -> None:
    line = stream().feed("done", {"finish_reason": reason, "usage": None})[0]
    assert orjson.loads(line[6:])["choices"][0]["finish_reason"] == reason


def test_error_event_is_an_error_data_line_without_done() -> None:
    chunks = stream(True)
    lines = chunks.feed("error", {"type": "rate_limited", "message": "slow down",
                                  "retryable": True})
    assert lines == [b'data: {"error":{"message":"slow down","type":"requests","param":null,'
                     b'"code":"rate_limit_exceeded"}}\n\n']
    assert chunks.ended


def test_cancelled_event_is_an_error_data_line() -> None:
    assert stream().feed("cancelled", {"reason": "abandoned"}) == [
        b'data: {"error":{"message":"the generation was cancelled (abandoned)",'
        b'"type":"cancelled","param":null,"code":"abandoned"}}\n\n']


@pytest.mark.parametrize(("kind", "status", "openai_type", "code"), [
    ("rate_limited", 429, "requests", "rate_limit_exceeded"),
    ("content_filter", 400, "invalid_request_error", "content_filter"),
    ("invalid_request", 400, "invalid_request_error", "invalid_request"),
    ("timeout", 504, "server_error", "timeout"),
    ("provider_error", 502, "server_error", "provider_error"),
    ("worker_lost", 500, "server_error", "worker_lost"),
])
def test_generation_error_statuses(kind: str, status: int, openai_type: str, code: str) -> None:
    assert generation_error({"type": kind, "message": "m"}) == (
        status, {"error": {"message": "m", "type": openai_type, "param": None, "code": code}})


def test_cancelled_error_status() -> None:
    assert cancelled_error("user") == (409, {"error": {
        "message": "the generation was cancelled (user)", "type": "cancelled", "param": None,
        "code": "user"}})


def test_usage_translation() -> None:
    assert openai_usage(None) is None
    assert openai_usage({"input_tokens": 10, "output_tokens": 2}) == {
        "prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}


def test_completion_with_text() -> None:
    body = completion(GEN, 1_700_000_000, "mock/mock-1", "Hi!", [], "stop",
                      {"input_tokens": 1, "output_tokens": 2})
    assert orjson.dumps(body) == (
        b'{"id":"chatcmpl-AbCdEfGhIjKlMnOpQrStUv","object":"chat.completion",'
        b'"created":1700000000,"model":"mock/mock-1","choices":[{"index":0,"message":'
        b'{"role":"assistant","content":"Hi!","refusal":null,"annotations":[]},'
        b'"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,'
        b'"completion_tokens":2,"total_tokens":3},"system_fingerprint":null}')


def test_completion_with_only_tool_calls_has_null_content() -> None:
    body = completion(GEN, 1, "m", "", [{"id": "call_1", "name": "f", "arguments": {"a": [1]}}],
                      "tool_calls", None)
    assert body["choices"][0]["message"] == {
        "role": "assistant", "content": None, "refusal": None, "annotations": [],
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "f", "arguments": '{"a":[1]}'}}]}
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["usage"] is None


def test_completion_empty_text_without_tools_is_empty_string() -> None:
    body = completion(GEN, 1, "m", "", [], "length", None)
    assert body["choices"][0]["message"]["content"] == ""


@pytest.mark.parametrize("include_usage", [False, True])
def test_fast_delta_matches_the_generic_chunk(include_usage: bool) -> None:
    chunks = stream(include_usage)
    for delta, reason in (({"content": "a\u2028\"b"}, None), ({}, "stop"),
                          ({"tool_calls": [{"index": 0}]}, None)):
        assert chunks.delta(delta, reason) == chunks.chunk(
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}])
