"""Anthropic Messages wire format (named SSE events, errors, non-stream body).

Event flow per the streaming docs: `message_start` (usage with input tokens),
per content block `content_block_start` / `content_block_delta` (`text_delta`
or `input_json_delta`) / `content_block_stop`, a `ping`, then `message_delta`
carrying `stop_reason` and *cumulative* usage, and `message_stop`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from tests.fakeprovider.scenarios import TOOL_ARG_FRAGMENT_CHARS, Scenario, split_chunks

Step = tuple[str, bytes]

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
STATUS_ERRORS = {
    400: ("invalid_request_error", "Invalid request (fake)."),
    401: ("authentication_error", "invalid x-api-key (fake)."),
    403: ("permission_error", "Permission denied (fake)."),
    404: ("not_found_error", "model not found (fake)."),
    413: ("request_too_large", "Request too large (fake)."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit (fake)."),
    529: ("overloaded_error", "Overloaded (fake)."),
}


def _event(name: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def _text_block(index: int, scenario: Scenario) -> Iterator[Step]:
    yield "meta", _event("content_block_start", {
        "type": "content_block_start", "index": index,
        "content_block": {"type": "text", "text": ""}})
    yield "meta", _event("ping", {"type": "ping"})
    for text in scenario.chunks:
        yield "token", _event("content_block_delta", {
            "type": "content_block_delta", "index": index,
            "delta": {"type": "text_delta", "text": text}})
    yield "meta", _event("content_block_stop", {"type": "content_block_stop", "index": index})


def _tool_block(index: int, call: dict[str, Any]) -> Iterator[Step]:
    block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:22]}", "name": call["name"],
             "input": {}}
    yield "token", _event("content_block_start", {
        "type": "content_block_start", "index": index, "content_block": block})
    arguments = orjson.dumps(call.get("arguments", {})).decode()
    for fragment in ["", *split_chunks(arguments, TOOL_ARG_FRAGMENT_CHARS)]:
        yield "token", _event("content_block_delta", {
            "type": "content_block_delta", "index": index,
            "delta": {"type": "input_json_delta", "partial_json": fragment}})
    yield "meta", _event("content_block_stop", {"type": "content_block_stop", "index": index})


def stream_steps(scenario: Scenario, body: dict[str, Any]) -> Iterator[Step]:
    """Every event of one streamed message, tagged for pacing and fault injection."""
    input_tokens, output_tokens = scenario.final_usage()
    message = {
        "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
        "content": [], "model": str(body.get("model") or "fake-model"),
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    yield "meta", _event("message_start", {"type": "message_start", "message": message})
    index = 0
    if scenario.chunks or not scenario.tool_calls:
        yield from _text_block(index, scenario)
        index += 1
    for call in scenario.tool_calls:
        yield from _tool_block(index, call)
        index += 1
    stop = STOP_REASONS.get(scenario.final_reason(), scenario.final_reason())
    yield "finish", _event("message_delta", {
        "type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}})
    yield "finish", _event("message_stop", {"type": "message_stop"})


def inband_error() -> bytes:
    """The `error` event Anthropic sends inside an already-started stream."""
    return _event("error", {"type": "error",
                            "error": {"type": "overloaded_error", "message": "Overloaded (fake)."}})


def status_error(status: int) -> bytes:
    """The JSON body of an HTTP error response."""
    err_type, message = STATUS_ERRORS.get(status, ("api_error", "Internal server error (fake)."))
    return orjson.dumps({"type": "error", "error": {"type": err_type, "message": message},
                         "request_id": f"req_{uuid.uuid4().hex[:24]}"})


def message(scenario: Scenario, body: dict[str, Any]) -> bytes:
    """A non-streaming `message` body."""
    content: list[dict[str, Any]] = []
    if scenario.chunks:
        content.append({"type": "text", "text": "".join(scenario.chunks)})
    for call in scenario.tool_calls:
        content.append({"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:22]}",
                        "name": call["name"], "input": call.get("arguments", {})})
    input_tokens, output_tokens = scenario.final_usage()
    return orjson.dumps({
        "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
        "content": content, "model": str(body.get("model") or "fake-model"),
        "stop_reason": STOP_REASONS.get(scenario.final_reason(), "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    })


def models(ids: list[str]) -> bytes:
    """`GET /v1/models` in Anthropic's paged list format."""
    data = [{"type": "model", "id": i, "display_name": i, "created_at": "2025-01-01T00:00:00Z"}
            for i in ids]
    return orjson.dumps({"data": data, "has_more": False,
                         "first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None})
