"""The AI SDK facade's UI message stream, byte for byte (shapes of the `ai` package, v7)."""

from __future__ import annotations

from typing import Any

from webapp.facades.ai_sdk_format import (
    STREAM_HEADERS,
    UIMessageStream,
    finish_reason,
    interrupted,
)

GEN = "gen_AbCdEfGhIjKlMnOpQrStUv"


def feed_all(stream: UIMessageStream, events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(b"".join(stream.feed(event, data)) for event, data in events)


def test_opening_is_start_with_the_generation_id_then_start_step() -> None:
    assert b"".join(UIMessageStream(GEN).opening()) == (
        b'data: {"type":"start","messageId":"gen_AbCdEfGhIjKlMnOpQrStUv"}\n\n'
        b'data: {"type":"start-step"}\n\n')


def test_text_then_done() -> None:
    stream = UIMessageStream(GEN)
    out = feed_all(stream, [
        ("status", {"status": "in_progress"}),
        ("delta", {"text": "Hi "}),
        ("delta", {"text": ""}),
        ("delta", {"text": "\"世界\"\n🙂"}),
        ("done", {"finish_reason": "stop", "usage": {"input_tokens": 1, "output_tokens": 2}}),
    ])
    assert out == (
        b'data: {"type":"text-start","id":"text-0"}\n\n'
        b'data: {"type":"text-delta","id":"text-0","delta":"Hi "}\n\n'
        b'data: {"type":"text-delta","id":"text-0","delta":"\\"\xe4\xb8\x96\xe7\x95\x8c\\"\\n'
        b'\xf0\x9f\x99\x82"}\n\n'
        b'data: {"type":"text-end","id":"text-0"}\n\n'
        b'data: {"type":"finish-step"}\n\n'
        b'data: {"type":"finish","finishReason":"stop"}\n\n'
        b"data: [DONE]\n\n")
    assert stream.ended
    assert stream.feed("delta", {"text": "late"}) == []


def test_tool_call_closes_the_text_and_text_after_it_is_a_new_part() -> None:
    stream = UIMessageStream(GEN)
    out = feed_all(stream, [
        ("delta", {"text": "Let me check."}),
        ("tool_call", {"index": 0, "id": "call_1", "name": "get_weather",
                       "arguments": {"city": "Paris"}}),
        ("delta", {"text": "Done."}),
        ("done", {"finish_reason": "tool_calls"}),
    ])
    assert out == (
        b'data: {"type":"text-start","id":"text-0"}\n\n'
        b'data: {"type":"text-delta","id":"text-0","delta":"Let me check."}\n\n'
        b'data: {"type":"text-end","id":"text-0"}\n\n'
        b'data: {"type":"tool-input-start","toolCallId":"call_1","toolName":"get_weather"}\n\n'
        b'data: {"type":"tool-input-delta","toolCallId":"call_1",'
        b'"inputTextDelta":"{\\"city\\":\\"Paris\\"}"}\n\n'
        b'data: {"type":"tool-input-available","toolCallId":"call_1","toolName":"get_weather",'
        b'"input":{"city":"Paris"}}\n\n'
        b'data: {"type":"text-start","id":"text-1"}\n\n'
        b'data: {"type":"text-delta","id":"text-1","delta":"Done."}\n\n'
        b'data: {"type":"text-end","id":"text-1"}\n\n'
        b'data: {"type":"finish-step"}\n\n'
        b'data: {"type":"finish","finishReason":"tool-calls"}\n\n'
        b"data: [DONE]\n\n")


def test_error_is_an_error_chunk_then_finish_with_reason_error() -> None:
    stream = UIMessageStream(GEN)
    out = feed_all(stream, [
        ("delta", {"text": "Par"}),
        ("error", {"type": "rate_limited", "message": "slow down", "retryable": True}),
    ])
    assert out == (
        b'data: {"type":"text-start","id":"text-0"}\n\n'
        b'data: {"type":"text-delta","id":"text-0","delta":"Par"}\n\n'
        b'data: {"type":"text-end","id":"text-0"}\n\n'
        b'data: {"type":"error","errorText":"slow down"}\n\n'
        b'data: {"type":"finish-step"}\n\n'
        b'data: {"type":"finish","finishReason":"error"}\n\n'
        b"data: [DONE]\n\n")


def test_cancelled_is_abort_with_the_reason() -> None:
    stream = UIMessageStream(GEN)
    assert feed_all(stream, [("cancelled", {"reason": "abandoned"})]) == (
        b'data: {"type":"abort","reason":"abandoned"}\n\n'
        b"data: [DONE]\n\n")
    assert stream.ended


def test_notices_and_statuses_send_nothing() -> None:
    stream = UIMessageStream(GEN)
    assert stream.feed("notice", {"type": "retry", "message": "x"}) == []
    assert stream.feed("status", {"status": "queued"}) == []
    assert not stream.ended


def test_finish_reasons_in_the_sdk_terms() -> None:
    assert [finish_reason(r) for r in ("stop", "length", "tool_calls", "content_filter",
                                       "cancelled", None)] == [
        "stop", "length", "tool-calls", "content-filter", "other", "other"]


def test_interrupted_names_the_generation_and_has_no_done() -> None:
    line = interrupted(GEN)
    assert line.startswith(b'data: {"type":"error","errorText":"the stream was interrupted;')
    assert GEN.encode() in line and line.endswith(b"\n\n") and b"[DONE]" not in line


def test_headers_declare_the_ui_message_stream() -> None:
    assert STREAM_HEADERS["x-vercel-ai-ui-message-stream"] == "v1"
