"""OpenAI Responses API wire formats, built from Spool events (pure, no Flask).

One generation is one response. Its stream is a pure function of its log:

    status queued       response.created (status queued)
    status in_progress  response.in_progress                        (once)
    delta               [response.output_item.added (message)
                         response.content_part.added (output_text)]  when no message is open
                        response.output_text.delta
    tool_call           (the open message closed: output_text.done, content_part.done,
                         output_item.done) response.output_item.added (function_call),
                        response.function_call_arguments.delta / .done, output_item.done
    done                (message closed) response.completed, or response.incomplete
                        (finish reason length: max_output_tokens; content_filter)
    error               (message closed, incomplete) response.failed, or
                        response.incomplete for a content filter
    cancelled           (message closed, incomplete) response.failed, status cancelled

Every event carries `sequence_number`, counted from 0 over this sequence, so
every read of a response numbers its events alike and `starting_after=N`
(events numbered N or less are skipped) resumes exactly. The response object
of `GET /v1/responses/{id}` is the translator's state after the log so far,
the same object the terminal event carries; `responses_store` builds its
fixed fields (`head`) from the generation's record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from spool.events import CANCELLED, DELTA, DONE, ERROR, STATUS, TOOL_CALL

RESPONSE_ID_PREFIX = "resp_"
GENERATION_ID_PREFIX = "gen_"
MESSAGE_ID_PREFIX = "msg_"
CALL_ITEM_ID_PREFIX = "fc_"
# Finish reasons that leave a response `incomplete`, and the reason OpenAI gives.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}
# Spool error type -> the `code` of a failed response's `error`.
ERROR_CODES = {"rate_limited": "rate_limit_exceeded", "invalid_request": "invalid_prompt"}
DEFAULT_ERROR_CODE = "server_error"
NOT_STARTED = -1  # starting_after that sends every event
DELTA_TYPE = "response.output_text.delta"
DELTA_HEAD = (b"event: " + DELTA_TYPE.encode() + b'\ndata: {"type":"' + DELTA_TYPE.encode()
              + b'","sequence_number":')
DELTA_TAIL = b',"logprobs":[]}\n\n'


def response_id(gen_id: str) -> str:
    """The `resp_…` id of a generation (its random part, so one maps to the other)."""
    return RESPONSE_ID_PREFIX + gen_id.removeprefix(GENERATION_ID_PREFIX)


def generation_id(resp_id: str) -> str:
    """The generation behind a `resp_…` id (a `gen_…` id is taken as it is)."""
    if resp_id.startswith(RESPONSE_ID_PREFIX):
        return GENERATION_ID_PREFIX + resp_id.removeprefix(RESPONSE_ID_PREFIX)
    return resp_id


def event_line(kind: str, body: dict[str, Any]) -> bytes:
    """One SSE event as OpenAI sends them: `event: <type>` and its `data:` line."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


def usage_object(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Spool usage {input_tokens, output_tokens} as a Responses `usage`."""
    if not usage:
        return None
    tokens_in, tokens_out = int(usage["input_tokens"]), int(usage["output_tokens"])
    return {"input_tokens": tokens_in,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": tokens_out, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens_in + tokens_out}


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


@dataclass
class ResponseEvents:
    """Turns one generation's events into Responses stream events and a response object.

    `head` holds the response object's fields besides its state (id,
    created_at, model, the echoed request fields, metadata).
    """

    head: dict[str, Any]
    starting_after: int = NOT_STARTED
    ended: bool = field(default=False, init=False)
    status: str = field(default="queued", init=False)
    output: list[dict[str, Any]] = field(default_factory=list, init=False)
    usage: dict[str, Any] | None = field(default=None, init=False)
    error: dict[str, Any] | None = field(default=None, init=False)
    incomplete: dict[str, Any] | None = field(default=None, init=False)
    _seq: int = field(default=-1, init=False)
    _started: bool = field(default=False, init=False)
    _texts: list[str] = field(default_factory=list, init=False)  # of the open message
    _open: dict[str, Any] | None = field(default=None, init=False)  # the open message
    _delta_mid: bytes = field(default=b"", init=False, repr=False)

    @property
    def last_sequence_number(self) -> int:
        """The number of the last event translated so far (-1 before any)."""
        return self._seq

    def response(self) -> dict[str, Any]:
        """The response object as the log so far leaves it."""
        output = [self._snapshot(item) for item in self.output]
        return {**self.head, "status": self.status, "error": self.error,
                "incomplete_details": self.incomplete, "output": output, "usage": self.usage}

    def _snapshot(self, item: dict[str, Any]) -> dict[str, Any]:
        if item is not self._open:
            return item
        return {**item, "content": [_part("".join(self._texts))]}

    def _emit(self, kind: str, body: dict[str, Any]) -> list[bytes]:
        self._seq += 1
        if self._seq <= self.starting_after:
            return []
        return [event_line(kind, {"type": kind, "sequence_number": self._seq, **body})]

    def _item_id(self, prefix: str) -> str:
        return f"{prefix}{self.head['id'].removeprefix(RESPONSE_ID_PREFIX)}_{len(self.output)}"

    def _where(self) -> dict[str, Any]:
        assert self._open is not None
        return {"item_id": self._open["id"], "output_index": len(self.output) - 1,
                "content_index": 0}

    def text(self, delta: str) -> list[bytes]:
        """A text delta, opening a message item and its text part if none is open."""
        if not delta:
            return []
        lines: list[bytes] = []
        if self._open is None:
            self._open = {"id": self._item_id(MESSAGE_ID_PREFIX), "type": "message",
                          "status": "in_progress", "role": "assistant", "content": []}
            self.output.append(self._open)
            self._texts = []
            lines += self._emit("response.output_item.added",
                                {"output_index": len(self.output) - 1, "item": self._open})
            lines += self._emit("response.content_part.added",
                                {**self._where(), "part": _part("")})
            # Everything of a delta event but its number and text, encoded once per
            # message: the bytes `_emit` would make, at a quarter of the cost per token.
            where = orjson.dumps(self._where())[1:-1]
            self._delta_mid = b"," + where + b',"delta":'
        self._texts.append(delta)
        self._seq += 1
        if self._seq <= self.starting_after:
            return lines
        lines.append(DELTA_HEAD + str(self._seq).encode() + self._delta_mid
                     + orjson.dumps(delta) + DELTA_TAIL)
        return lines

    def _close(self, status: str) -> list[bytes]:
        """Close the open message item (if any) with `status`."""
        if self._open is None:
            return []
        text = "".join(self._texts)
        where = self._where()
        item = {**self._open, "status": status, "content": [_part(text)]}
        self.output[-1] = item
        self._open = None
        return [*self._emit("response.output_text.done",
                            {**where, "text": text, "logprobs": []}),
                *self._emit("response.content_part.done", {**where, "part": _part(text)}),
                *self._emit("response.output_item.done",
                            {"output_index": where["output_index"], "item": item})]

    def tool_call(self, call: dict[str, Any]) -> list[bytes]:
        """A complete tool call as a function_call item: added, its arguments, done."""
        lines = self._close("completed")
        arguments = orjson.dumps(call["arguments"]).decode()
        item = {"id": self._item_id(CALL_ITEM_ID_PREFIX), "type": "function_call",
                "status": "in_progress", "call_id": call["id"], "name": call["name"],
                "arguments": ""}
        index = len(self.output)
        self.output.append(item)
        lines += self._emit("response.output_item.added", {"output_index": index, "item": item})
        where = {"item_id": item["id"], "output_index": index}
        lines += self._emit("response.function_call_arguments.delta", {**where, "delta": arguments})
        lines += self._emit("response.function_call_arguments.done",
                            {**where, "name": call["name"], "arguments": arguments})
        done = {**item, "status": "completed", "arguments": arguments}
        self.output[index] = done
        return lines + self._emit("response.output_item.done",
                                  {"output_index": index, "item": done})

    def status_event(self, status: str) -> list[bytes]:
        """`status` events: the first is response.created, in_progress once after it."""
        if not self._started:
            self._started = True
            self.status = status
            return self._emit("response.created", {"response": self.response()})
        if status == "in_progress" and self.status == "queued":
            self.status = status
            return self._emit("response.in_progress", {"response": self.response()})
        return []

    def _end(self, status: str, kind: str) -> list[bytes]:
        lines = self._close("completed" if status == "completed" else "incomplete")
        self.status = status
        self.ended = True
        return lines + self._emit(kind, {"response": self.response()})

    def finish(self, data: dict[str, Any]) -> list[bytes]:
        """The terminal event for `done`: completed, or incomplete with its reason."""
        self.usage = usage_object(data.get("usage"))
        reason = INCOMPLETE_REASONS.get(str(data.get("finish_reason")))
        if reason is None:
            return self._end("completed", "response.completed")
        self.incomplete = {"reason": reason}
        return self._end("incomplete", "response.incomplete")

    def fail(self, data: dict[str, Any]) -> list[bytes]:
        """The terminal event for `error` (a content filter leaves it incomplete)."""
        kind = str(data.get("type") or "provider_error")
        if kind == "content_filter":
            self.incomplete = {"reason": "content_filter"}
            return self._end("incomplete", "response.incomplete")
        self.error = {"code": ERROR_CODES.get(kind, DEFAULT_ERROR_CODE),
                      "message": str(data.get("message") or "the response failed")}
        return self._end("failed", "response.failed")

    def cancel(self) -> list[bytes]:
        """The terminal event for `cancelled`: response.failed, its status `cancelled`
        (the Responses API has no event of its own for it; `error` stays null, as
        in a cancelled response OpenAI returns)."""
        return self._end("cancelled", "response.failed")

    def feed(self, event: str, data: dict[str, Any]) -> list[bytes]:
        """The events for one Spool event (notices have none)."""
        if self.ended:
            return []
        if event == DELTA and self._started:  # the hot path: one per token
            return self.text(data["text"])
        if event == STATUS:
            return self.status_event(str(data.get("status")))
        # A log starts with `status`; if one ever did not, the stream still starts right.
        lines = [] if self._started else self.status_event("queued")
        if event == DELTA:
            return lines + self.text(data["text"])
        if event == TOOL_CALL:
            return lines + self.tool_call(data)
        if event == DONE:
            return lines + self.finish(data)
        if event == ERROR:
            return lines + self.fail(data)
        if event == CANCELLED:
            return lines + self.cancel()
        return lines
