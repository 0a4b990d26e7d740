"""Spool events → Responses stream events, byte for byte, and the response object."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from webapp.facades.responses_format import (
    ResponseEvents,
    event_line,
    generation_id,
    response_id,
)
from webapp.facades.responses_store import derived_echo, head, item_location

GEN = "gen_ABCDEFGHIJKLMNOPQRSTUVWX"
RESP = "resp_ABCDEFGHIJKLMNOPQRSTUVWX"
ECHO = {"model": "mock/m", "instructions": None, "tools": [], "tool_choice": "auto",
        "max_output_tokens": None, "temperature": None, "top_p": None,
        "parallel_tool_calls": True, "background": False, "text": {"format": {"type": "text"}},
        "truncation": "disabled"}
USAGE = {"input_tokens": 3, "output_tokens": 5}
CALL = {"index": 0, "id": "call_1", "name": "f", "arguments": {"a": "é"}}
parse: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def events(starting_after: int = -1) -> ResponseEvents:
    return ResponseEvents(head(GEN, 1_700_000_000_999, {"k": "v"}, ECHO), starting_after)


LOG: list[tuple[str, dict[str, Any]]] = [
    ("status", {"status": "queued"}), ("status", {"status": "in_progress"}),
    ("notice", {"message": "retrying"}),
    ("delta", {"text": "Hi"}), ("delta", {"text": ""}), ("delta", {"text": " 世界"}),
    ("tool_call", CALL),
    ("done", {"finish_reason": "tool_calls", "usage": USAGE, "metrics": {}}),
]


def run(log: list[tuple[str, dict[str, Any]]], starting_after: int = -1) -> list[bytes]:
    translator = events(starting_after)
    return [line for event, data in log for line in translator.feed(event, data)]


def decoded(lines: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        head_line, data_line, rest = line.split(b"\n", 2)
        assert rest == b"\n"
        body = orjson.loads(data_line.removeprefix(b"data: "))
        assert head_line == b"event: " + body["type"].encode()
        out.append(body)
    return out


def test_ids_map_both_ways() -> None:
    assert response_id(GEN) == RESP and generation_id(RESP) == GEN
    assert generation_id(GEN) == GEN


def test_event_line_bytes() -> None:
    assert event_line("response.x", {"type": "response.x", "a": "é"}) == (
        b'event: response.x\ndata: {"type":"response.x","a":"\xc3\xa9"}\n\n')


def test_the_whole_sequence_byte_for_byte() -> None:
    lines = run(LOG)
    msg, fc = f"msg_{RESP[5:]}_0", f"fc_{RESP[5:]}_1"
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    full = {**part, "text": "Hi 世界"}
    message = {"id": msg, "type": "message", "status": "in_progress", "role": "assistant",
               "content": []}
    done_message = {**message, "status": "completed", "content": [full]}
    call = {"id": fc, "type": "function_call", "status": "in_progress", "call_id": "call_1",
            "name": "f", "arguments": ""}
    done_call = {**call, "status": "completed", "arguments": '{"a":"é"}'}
    where = {"item_id": msg, "output_index": 0, "content_index": 0}
    base = {"id": RESP, "object": "response", "created_at": 1_700_000_000,
            "metadata": {"k": "v"}, "previous_response_id": None, **ECHO}

    def response(status: str, output: list[Any], usage: Any = None) -> dict[str, Any]:
        return {**base, "status": status, "error": None, "incomplete_details": None,
                "output": output, "usage": usage}

    expected = [
        ("response.created", {"response": response("queued", [])}),
        ("response.in_progress", {"response": response("in_progress", [])}),
        ("response.output_item.added", {"output_index": 0, "item": message}),
        ("response.content_part.added", {**where, "part": part}),
        ("response.output_text.delta", {**where, "delta": "Hi", "logprobs": []}),
        ("response.output_text.delta", {**where, "delta": " 世界", "logprobs": []}),
        ("response.output_text.done", {**where, "text": "Hi 世界", "logprobs": []}),
        ("response.content_part.done", {**where, "part": full}),
        ("response.output_item.done", {"output_index": 0, "item": done_message}),
        ("response.output_item.added", {"output_index": 1, "item": call}),
        ("response.function_call_arguments.delta",
         {"item_id": fc, "output_index": 1, "delta": '{"a":"é"}'}),
        ("response.function_call_arguments.done",
         {"item_id": fc, "output_index": 1, "name": "f", "arguments": '{"a":"é"}'}),
        ("response.output_item.done", {"output_index": 1, "item": done_call}),
        ("response.completed", {"response": response(
            "completed", [done_message, done_call],
            {"input_tokens": 3,
             "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
             "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": 8})}),
    ]
    assert lines == [event_line(kind, {"type": kind, "sequence_number": n, **body})
                     for n, (kind, body) in enumerate(expected)]
    for body in decoded(lines):  # the SDK's own models accept every event
        parsed = parse.validate_python(body)
        assert parsed.type == body["type"]
    Response.model_validate(decoded(lines)[-1]["response"])


def test_starting_after_is_exact_and_reads_are_identical() -> None:
    whole = run(LOG)
    assert run(LOG) == whole
    for n in range(-1, len(whole) + 1):
        assert run(LOG, n) == whole[n + 1:]


def test_response_object_so_far() -> None:
    translator = events()
    for event, data in LOG[:4]:
        translator.feed(event, data)
    snapshot = translator.response()
    assert snapshot["status"] == "in_progress"
    [item] = snapshot["output"]
    assert item["status"] == "in_progress" and item["content"][0]["text"] == "Hi"
    Response.model_validate(snapshot)


@pytest.mark.parametrize("end,kind,status,extra", [
    (("done", {"finish_reason": "length", "usage": USAGE}), "response.incomplete",
     "incomplete", {"incomplete_details": {"reason": "max_output_tokens"}}),
    (("done", {"finish_reason": "content_filter", "usage": USAGE}), "response.incomplete",
     "incomplete", {"incomplete_details": {"reason": "content_filter"}}),
    (("error", {"type": "content_filter", "message": "no"}), "response.incomplete",
     "incomplete", {"incomplete_details": {"reason": "content_filter"}}),
    (("error", {"type": "rate_limited", "message": "slow down"}), "response.failed", "failed",
     {"error": {"code": "rate_limit_exceeded", "message": "slow down"}}),
    (("error", {"type": "worker_lost", "message": "lost"}), "response.failed", "failed",
     {"error": {"code": "server_error", "message": "lost"}}),
    (("cancelled", {"reason": "user"}), "response.failed", "cancelled",
     {"error": None, "incomplete_details": None}),
])
def test_terminal_events(end: tuple[str, dict[str, Any]], kind: str, status: str,
                         extra: dict[str, Any]) -> None:
    log = [*LOG[:4], end, ("delta", {"text": "ignored after the end"})]
    bodies = decoded(run(log))
    assert [b["type"] for b in bodies[-4:]] == ["response.output_text.done",
                                                "response.content_part.done",
                                                "response.output_item.done", kind]
    closed = bodies[-2]["item"]
    assert closed["status"] == ("incomplete" if status != "completed" else "completed")
    final = bodies[-1]["response"]
    assert final["status"] == status
    for name, value in extra.items():
        assert final[name] == value
    assert closed == final["output"][0]
    parse.validate_python(bodies[-1])


def test_derived_echo_for_a_plain_generation() -> None:
    echo = derived_echo({"provider": "openai", "model": "gpt-x", "system": "Be nice",
                         "max_tokens": 9, "tools": [{"type": "function", "function": {
                             "name": "f", "parameters": {"type": "object"}}}],
                         "tool_choice": {"type": "function", "function": {"name": "f"}}})
    assert echo["model"] == "openai/gpt-x" and echo["instructions"] == "Be nice"
    assert echo["max_output_tokens"] == 9
    assert echo["tools"][0]["name"] == "f"
    assert echo["tool_choice"] == {"type": "function", "name": "f"}
    Response.model_validate({**head(GEN, 0, {}, echo), "status": "queued", "output": [],
                             "usage": None, "error": None, "incomplete_details": None})


def test_item_ids_name_their_response_and_position() -> None:
    translator = events()
    for event, data in LOG:
        translator.feed(event, data)
    ids = [item["id"] for item in translator.response()["output"]]
    assert [item_location(i) for i in ids] == [(GEN, 0), (GEN, 1)]
    random_with_underscore = "gen_ab_cd-EFGHIJKLMNOPQRSTUVWX"
    assert item_location(f"msg_{random_with_underscore[4:]}_12") == (random_with_underscore, 12)
    for bad in ("msg_", "msg_x", "msg__3", "fc_abc_x", "call_1", "rs_abc_1"):
        assert item_location(bad) is None
