"""OpenAI Chat Completions wire format (streaming chunks, errors, non-stream body).

Shapes follow the Chat Completions API reference: `chat.completion.chunk`
objects as `data:` lines, the role chunk first, `tool_calls` deltas keyed by
index, a usage chunk with empty `choices` when `stream_options.include_usage`
is set, and a final `data: [DONE]`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from tests.fakeprovider.scenarios import TOOL_ARG_FRAGMENT_CHARS, Scenario, split_chunks

Step = tuple[str, bytes]  # ("meta" | "token" | "finish", bytes to send)

STATUS_ERRORS = {
    400: ("invalid_request_error", "invalid_request", "Invalid request (fake)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (fake)."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden (fake)."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist (fake)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (fake)."),
}


def _data(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class _Chunker:
    """Builds chunk envelopes that share one id, timestamp and model."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.base = {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
        }
        self.include_usage = include_usage

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = dict(self.base)
        body["choices"] = [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        ]
        if self.include_usage:
            body["usage"] = None
        return _data(body)

    def usage(self, input_tokens: int, output_tokens: int) -> bytes:
        body = dict(self.base)
        body["choices"] = []
        body["usage"] = {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
        return _data(body)


def stream_steps(scenario: Scenario, body: dict[str, Any]) -> Iterator[Step]:
    """Every piece of one streamed answer, tagged for pacing and fault injection."""
    options = body.get("stream_options") or {}
    out = _Chunker(str(body.get("model") or "fake-model"), bool(options.get("include_usage")))
    yield "meta", out.chunk({"role": "assistant", "content": "", "refusal": None})
    for text in scenario.chunks:
        yield "token", out.chunk({"content": text})
    for index, call in enumerate(scenario.tool_calls):
        arguments = orjson.dumps(call.get("arguments", {})).decode()
        head = {
            "index": index,
            "id": f"call_{uuid.uuid4().hex[:20]}",
            "type": "function",
            "function": {"name": call["name"], "arguments": ""},
        }
        yield "token", out.chunk({"tool_calls": [head]})
        for fragment in split_chunks(arguments, TOOL_ARG_FRAGMENT_CHARS):
            part = {"index": index, "function": {"arguments": fragment}}
            yield "token", out.chunk({"tool_calls": [part]})
    yield "finish", out.chunk({}, finish=scenario.final_reason())
    if out.include_usage:
        yield "finish", out.usage(*scenario.final_usage())
    yield "finish", b"data: [DONE]\n\n"


def inband_error() -> bytes:
    """The error object OpenAI sends inside an already-started stream."""
    error = {"message": "The server had an error while processing your request (fake).",
             "type": "server_error", "param": None, "code": None}
    return _data({"error": error})


def status_error(status: int) -> bytes:
    """The JSON body of an HTTP error response."""
    err_type, code, message = STATUS_ERRORS.get(
        status, ("server_error", None, "The server had an error processing your request (fake).")
    )
    return orjson.dumps({"error": {"message": message, "type": err_type, "param": None,
                                   "code": code}})


def completion(scenario: Scenario, body: dict[str, Any]) -> bytes:
    """A non-streaming `chat.completion` body."""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(scenario.chunks),
                               "refusal": None}
    if scenario.tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{uuid.uuid4().hex[:20]}", "type": "function",
             "function": {"name": c["name"],
                          "arguments": orjson.dumps(c.get("arguments", {})).decode()}}
            for c in scenario.tool_calls
        ]
    input_tokens, output_tokens = scenario.final_usage()
    return orjson.dumps({
        "id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion",
        "created": int(time.time()), "model": str(body.get("model") or "fake-model"),
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": scenario.final_reason()}],
        "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                  "total_tokens": input_tokens + output_tokens},
    })


def models(ids: list[str]) -> bytes:
    """`GET /v1/models` in OpenAI's list format."""
    data = [{"id": i, "object": "model", "created": 1700000000, "owned_by": "fake"} for i in ids]
    return orjson.dumps({"object": "list", "data": data})
