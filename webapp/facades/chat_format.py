"""OpenAI Chat Completions wire formats, built from Spool events (pure, no Flask).

Streaming: `data: {chat.completion.chunk}` lines, a role chunk first, text
and tool-call deltas, a finish chunk, the usage chunk (`choices: []`) when
`stream_options.include_usage` asked for it, then `data: [DONE]`. A failed
or cancelled generation ends with an `{"error": {...}}` data line instead,
as OpenAI's own streams do (the SDK raises it as an APIError).

No `id:` lines: the OpenAI SDK's SSE decoder keeps the last event id, and
then reads a keep-alive comment's blank line as an empty event, which it
fails to parse. Clients resume by text offset instead (docs/facade.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from spool.events import CANCELLED, DELTA, DONE, ERROR, TOOL_CALL
from webapp.facades.wire import DONE_LINE, data_line

COMPLETION_ID_PREFIX = "chatcmpl-"
GENERATION_ID_PREFIX = "gen_"
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})

# Spool error type -> (HTTP status, OpenAI error type, OpenAI error code).
ERRORS: dict[str, tuple[int, str, str]] = {
    "rate_limited": (429, "requests", "rate_limit_exceeded"),
    "invalid_request": (400, "invalid_request_error", "invalid_request"),
    "content_filter": (400, "invalid_request_error", "content_filter"),
    "timeout": (504, "server_error", "timeout"),
    "unavailable": (503, "server_error", "unavailable"),
    "provider_error": (502, "server_error", "provider_error"),
}
UNKNOWN_ERROR = (500, "server_error")
CANCELLED_STATUS = 409
CANCELLED_TYPE = "cancelled"


def completion_id(gen_id: str) -> str:
    """The `chatcmpl-…` id of a generation (its random part, so one maps to the other)."""
    return COMPLETION_ID_PREFIX + gen_id.removeprefix(GENERATION_ID_PREFIX)


def openai_usage(usage: dict[str, Any] | None) -> dict[str, int] | None:
    """Spool usage {input_tokens, output_tokens} in OpenAI's terms."""
    if not usage:
        return None
    prompt, completion = int(usage["input_tokens"]), int(usage["output_tokens"])
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def finish_reason(reason: str | None) -> str:
    """A Spool finish reason as one OpenAI knows."""
    return reason if reason in FINISH_REASONS else "stop"


def error_object(message: str, type: str, code: str | None,
                 param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def generation_error(error: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for a generation that ended with `error {type, message}`."""
    error = error or {}
    kind = str(error.get("type") or "provider_error")
    status, openai_type, code = ERRORS.get(kind, (*UNKNOWN_ERROR, kind))
    message = str(error.get("message") or "the generation failed")
    return status, error_object(message, openai_type, code)


def cancelled_error(reason: str | None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for a generation cancelled by a user or abandoned."""
    reason = reason or "user"
    message = f"the generation was cancelled ({reason})"
    return CANCELLED_STATUS, error_object(message, CANCELLED_TYPE, reason)


def tool_call_message(call: dict[str, Any]) -> dict[str, Any]:
    """A Spool tool call {id, name, arguments: {...}} in OpenAI's message shape."""
    return {"id": call["id"], "type": "function",
            "function": {"name": call["name"], "arguments": _json(call["arguments"])}}


def completion(gen_id: str, created: int, model: str, text: str,
               tool_calls: list[dict[str, Any]], reason: str | None,
               usage: dict[str, Any] | None) -> dict[str, Any]:
    """A non-streamed `chat.completion` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if tool_calls:
        message["tool_calls"] = [tool_call_message(call) for call in tool_calls]
    return {
        "id": completion_id(gen_id),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason(reason)}],
        "usage": openai_usage(usage),
        "system_fingerprint": None,
    }


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass
class ChunkStream:
    """Turns one generation's events into `chat.completion.chunk` lines, in order."""

    gen_id: str
    created: int
    model: str
    include_usage: bool
    ended: bool = field(default=False, init=False)

    _head: bytes = field(default=b"", init=False, repr=False)
    _end: bytes = field(default=b"", init=False, repr=False)

    def __post_init__(self) -> None:
        # Everything around a choice's delta is the same in every chunk of a
        # stream: encode it once, so a token costs one small dumps().
        prefix = orjson.dumps(self._envelope())[:-1]  # without the closing brace
        self._head = b"data: " + prefix + b',"choices":[{"index":0,"delta":'
        self._end = b"}]" + (b',"usage":null' if self.include_usage else b"") + b"}\n\n"

    def _envelope(self) -> dict[str, Any]:
        return {
            "id": completion_id(self.gen_id),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
        }

    def chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        """One chunk line; `usage` is present (null until the last) with include_usage."""
        body = {**self._envelope(), "choices": choices}
        if self.include_usage:
            body["usage"] = usage
        return data_line(body)

    def delta(self, delta: dict[str, Any], reason: str | None = None) -> bytes:
        """A chunk with one choice carrying `delta` (the same bytes `chunk` would make)."""
        return (self._head + orjson.dumps(delta) + b',"logprobs":null,"finish_reason":'
                + orjson.dumps(reason) + self._end)

    def opening(self) -> bytes:
        """The first chunk: the assistant role with empty content."""
        return self.delta({"role": "assistant", "content": "", "refusal": None})

    def tool_call(self, call: dict[str, Any]) -> list[bytes]:
        """A complete tool call as OpenAI streams one: header, then its arguments."""
        header = {"index": call["index"], "id": call["id"], "type": "function",
                  "function": {"name": call["name"], "arguments": ""}}
        arguments = {"index": call["index"], "function": {"arguments": _json(call["arguments"])}}
        return [self.delta({"tool_calls": [header]}), self.delta({"tool_calls": [arguments]})]

    def finish(self, data: dict[str, Any]) -> list[bytes]:
        """The finish chunk, the usage chunk if asked for, and [DONE]."""
        lines = [self.delta({}, finish_reason(data.get("finish_reason")))]
        if self.include_usage:
            lines.append(self.chunk([], openai_usage(data.get("usage"))))
        lines.append(DONE_LINE)
        return lines

    def feed(self, event: str, data: dict[str, Any]) -> list[bytes]:
        """The lines for one Spool event (status and notice events have none)."""
        if self.ended:
            return []
        if event == DELTA:
            return [self.delta({"content": data["text"]})] if data["text"] else []
        if event == TOOL_CALL:
            return self.tool_call(data)
        if event in (DONE, ERROR, CANCELLED):
            self.ended = True
        if event == DONE:
            return self.finish(data)
        if event == ERROR:
            return [data_line(generation_error(data)[1])]
        if event == CANCELLED:
            return [data_line(cancelled_error(data.get("reason"))[1])]
        return []
