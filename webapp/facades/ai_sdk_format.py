"""The Vercel AI SDK's UI message stream, built from Spool events (pure, no Flask).

The shapes are those of the `ai` npm package, major version 7 (its
`uiMessageChunkSchema`, `ui-message-stream/ui-message-chunks.ts`): SSE
`data:` lines, each one UI message chunk, ending with `data: [DONE]`, and the
header `x-vercel-ai-ui-message-stream: v1`. One generation is one assistant
message of one step:

    start {messageId}  start-step
    text-start / text-delta… / text-end          (one text part per run of text)
    tool-input-start / tool-input-delta / tool-input-available   (per tool call)
    finish-step  finish {finishReason}  [DONE]   (done)
    error {errorText}  finish-step  finish {finishReason: "error"}  [DONE]   (error)
    abort {reason}  [DONE]                        (cancelled)

The message id is the generation id, so a client holding the message can
cancel it (`POST /v1/generations/{id}/cancel`) or read its record. The
stream is a pure function of the log: a reconnecting client gets the same
bytes from the start (the transport's `resumeStreamIsReplay`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from spool.events import CANCELLED, DELTA, DONE, ERROR, TOOL_CALL
from webapp.facades.wire import DONE_LINE, data_line

STREAM_HEADERS = {
    "x-vercel-ai-ui-message-stream": "v1",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
# Spool finish reason -> the AI SDK's FinishReason; anything else is "other".
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "content_filter": "content-filter",
}
ERROR_FINISH_REASON = "error"
TEXT_PART_PREFIX = "text-"
DEFAULT_ERROR_TEXT = "the generation failed"
DEFAULT_CANCEL_REASON = "user"


def finish_reason(reason: str | None) -> str:
    """A Spool finish reason in the AI SDK's terms."""
    return FINISH_REASONS.get(reason or "", "other")


def interrupted(gen_id: str) -> bytes:
    """The error chunk for a stream cut on the server side (the generation goes on)."""
    return data_line({"type": "error", "errorText": (
        f"the stream was interrupted; generation {gen_id} continues: reconnect to resume it")})


@dataclass
class UIMessageStream:
    """Turns one generation's events into UI message stream lines, in order."""

    message_id: str
    ended: bool = field(default=False, init=False)
    _text_id: str | None = field(default=None, init=False)  # the open text part
    _text_parts: int = field(default=0, init=False)

    def opening(self) -> list[bytes]:
        """The message's and its step's start."""
        return [data_line({"type": "start", "messageId": self.message_id}),
                data_line({"type": "start-step"})]

    def _close_text(self) -> list[bytes]:
        if self._text_id is None:
            return []
        line = data_line({"type": "text-end", "id": self._text_id})
        self._text_id = None
        return [line]

    def text(self, delta: str) -> list[bytes]:
        """A text delta, opening a text part first if none is open."""
        if not delta:
            return []
        lines = []
        if self._text_id is None:
            self._text_id = f"{TEXT_PART_PREFIX}{self._text_parts}"
            self._text_parts += 1
            lines.append(data_line({"type": "text-start", "id": self._text_id}))
        lines.append(data_line({"type": "text-delta", "id": self._text_id, "delta": delta}))
        return lines

    def tool_call(self, call: dict[str, Any]) -> list[bytes]:
        """A complete tool call as the SDK streams one: start, its input as JSON, available."""
        ids = {"toolCallId": call["id"], "toolName": call["name"]}
        arguments = call["arguments"]
        return [
            *self._close_text(),
            data_line({"type": "tool-input-start", **ids}),
            data_line({"type": "tool-input-delta", "toolCallId": call["id"],
                       "inputTextDelta": orjson.dumps(arguments).decode()}),
            data_line({"type": "tool-input-available", **ids, "input": arguments}),
        ]

    def finish(self, reason: str) -> list[bytes]:
        """The step's and the message's end, then [DONE]."""
        return [data_line({"type": "finish-step"}),
                data_line({"type": "finish", "finishReason": reason}), DONE_LINE]

    def feed(self, event: str, data: dict[str, Any]) -> list[bytes]:
        """The lines for one Spool event (status and notice events have none)."""
        if self.ended:
            return []
        if event == DELTA:
            return self.text(data["text"])
        if event == TOOL_CALL:
            return self.tool_call(data)
        if event not in (DONE, ERROR, CANCELLED):
            return []
        self.ended = True
        lines = self._close_text()
        if event == DONE:
            return lines + self.finish(finish_reason(data.get("finish_reason")))
        if event == ERROR:
            text = str(data.get("message") or DEFAULT_ERROR_TEXT)
            return [*lines, data_line({"type": "error", "errorText": text}),
                    *self.finish(ERROR_FINISH_REASON)]
        reason = str(data.get("reason") or DEFAULT_CANCEL_REASON)
        return [*lines, data_line({"type": "abort", "reason": reason}), DONE_LINE]
