"""The AI SDK's chat request → a Spool generation request (pure, no Flask).

`DefaultChatTransport` posts `{id, messages, trigger, messageId, ...body}`:
`id` is the chat id, `messages` are UI messages (`{id, role, parts}`), and
whatever the app passes as the transport's `body` is merged in at the top
level. Here that is Spool's own generation fields (`provider`, `model`,
`max_tokens`, `tools`, `mock`, …), which the core then validates as usual
(an unknown field is a 400 naming it).

UI messages become Spool (OpenAI-shaped) messages as the SDK's own
`convertToModelMessages` does: text parts joined; an assistant message split
at each `step-start` into one assistant message per step, carrying that
step's tool calls, each followed by a `tool` message with its result.
Parts that never reach a model (reasoning, sources, `data-*`, step marks)
are dropped; files are refused, since Spool carries text only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from webapp.errors import ApiError

MAX_CHAT_ID_CHARS = 256
TRIGGERS = (None, "submit-message", "regenerate-message")
# Transport fields that are not generation fields.
TRANSPORT_FIELDS = frozenset({"id", "messages", "trigger", "messageId"})
ROLES = ("system", "user", "assistant")
TEXT_PART_JOINER = "\n"
TOOL_PREFIX = "tool-"
DYNAMIC_TOOL = "dynamic-tool"
# Parts a model never sees (convertToModelMessages drops them too).
SKIPPED_PARTS = frozenset({"reasoning", "source-url", "source-document", "custom",
                           "reasoning-file", "step-start"})
STEP_START = "step-start"
# Tool part states without a result (left out: no provider takes a call without its
# result, as convertToModelMessages' ignoreIncompleteToolCalls), and with one.
UNANSWERED_STATES = frozenset({"input-streaming", "input-available", "approval-requested",
                               "approval-responded"})
RESULT_STATES = frozenset({"output-available", "output-error", "output-denied"})
DENIED_TEXT = "The tool call was denied"


@dataclass(frozen=True)
class ChatRequest:
    """A translated request: the chat id and the body of POST /v1/generations."""

    chat_id: str
    generation: dict[str, Any]
    # origins[n]: index of the UI message Spool message n came from (for error params).
    origins: list[int]


def invalid(message: str, param: str | None) -> ApiError:
    """A 400 in API.md's error shape."""
    return ApiError(400, message, param=param)


def _string(value: Any, param: str, *, limit: int | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(f"{param} must be a non-empty string", param)
    if limit is not None and len(value) > limit:
        raise invalid(f"{param} must be at most {limit} characters", param)
    return value


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


@dataclass
class _Step:
    """One assistant step being built: its text, its tool calls and their results."""

    texts: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    def messages(self) -> list[dict[str, Any]]:
        if not self.texts and not self.calls:
            return []
        text = TEXT_PART_JOINER.join(self.texts)
        if not self.calls:
            return [{"role": "assistant", "content": text}]
        # As OpenAI's own: no content (null) beside tool calls when there was no text.
        return [{"role": "assistant", "content": text or None, "tool_calls": self.calls},
                *self.results]


def _denied(part: dict[str, Any]) -> bool:
    approval = part.get("approval")
    return (part.get("state") == "approval-responded" and isinstance(approval, dict)
            and approval.get("approved") is False)


def _answered(part: dict[str, Any], param: str) -> bool:
    """Whether a tool part carries a result (a denied approval counts as one)."""
    state = part.get("state")
    if state in RESULT_STATES or _denied(part):
        return True
    if state in UNANSWERED_STATES:
        return False
    raise invalid(f"{param}.state must be one of "
                  + ", ".join(sorted(UNANSWERED_STATES | RESULT_STATES)), f"{param}.state")


def _tool_part(part: dict[str, Any], param: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the assistant's call, its `tool` result message) of an answered tool part."""
    kind = part["type"]
    name = part.get("toolName") if kind == DYNAMIC_TOOL else kind[len(TOOL_PREFIX):]
    name = _string(name, f"{param}.toolName" if kind == DYNAMIC_TOOL else f"{param}.type")
    call_id = _string(part.get("toolCallId"), f"{param}.toolCallId")
    call = {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": _json_text(part.get("input", {}))}}
    state = part.get("state")
    if state == "output-available":
        content = _json_text(part.get("output"))
    elif state == "output-error":
        content = str(part.get("errorText") or "")
    else:  # output-denied, or an approval answered with a refusal
        approval = part.get("approval")
        reason = approval.get("reason") if isinstance(approval, dict) else None
        content = f"{DENIED_TEXT}: {reason}" if reason else DENIED_TEXT
    return call, {"role": "tool", "tool_call_id": call_id, "content": content}


def _is_tool(kind: str) -> bool:
    return kind == DYNAMIC_TOOL or kind.startswith(TOOL_PREFIX)


def _parts(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    parts = message.get("parts")
    if not isinstance(parts, list):
        raise invalid(f"{param}.parts must be an array", f"{param}.parts")
    for index, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid("a part must be an object with a string `type`",
                          f"{param}.parts.{index}")
    return parts


def _text(part: dict[str, Any], param: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise invalid("a text part needs a string `text`", f"{param}.text")
    return text


def _assistant(parts: list[dict[str, Any]], param: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    step = _Step()
    for index, part in enumerate(parts):
        kind, where = part["type"], f"{param}.parts.{index}"
        if kind == STEP_START or (kind == "text" and step.calls):
            out += step.messages()  # a new step (or text after this step's calls)
            step = _Step()
        if kind == "text":
            step.texts.append(_text(part, where))
        elif _is_tool(kind):
            if _answered(part, where):
                call, result = _tool_part(part, where)
                step.calls.append(call)
                step.results.append(result)
        elif not _skipped(kind):
            raise _unsupported(kind, where)
    return out + step.messages()


def _skipped(kind: str) -> bool:
    return kind in SKIPPED_PARTS or kind.startswith("data-")


def _unsupported(kind: str, param: str) -> ApiError:
    if kind == "file":
        return invalid("file parts are not supported: Spool sends text only", param)
    return invalid(f"unsupported part type {kind!r}", f"{param}.type")


def _plain(role: str, parts: list[dict[str, Any]], param: str) -> dict[str, Any]:
    """A system or user message: its text parts joined."""
    texts = []
    for index, part in enumerate(parts):
        kind, where = part["type"], f"{param}.parts.{index}"
        if kind == "text":
            texts.append(_text(part, where))
        elif _is_tool(kind) or not _skipped(kind):
            raise _unsupported(kind, where)
    return {"role": role, "content": TEXT_PART_JOINER.join(texts)}


def translate_messages(messages: Any) -> tuple[list[dict[str, Any]], list[int]]:
    """UI messages → (Spool messages, the UI message index of each)."""
    if not isinstance(messages, list) or not messages:
        raise invalid("messages must be a non-empty array of UI messages", "messages")
    out: list[dict[str, Any]] = []
    origins: list[int] = []
    for index, message in enumerate(messages):
        param = f"messages.{index}"
        if not isinstance(message, dict):
            raise invalid(f"{param} must be an object", param)
        if message.get("id") is not None and not isinstance(message["id"], str):
            raise invalid(f"{param}.id must be a string", f"{param}.id")
        role = message.get("role")
        if role not in ROLES:
            raise invalid(f"{param}.role must be one of {', '.join(ROLES)}", f"{param}.role")
        parts = _parts(message, param)
        converted = (_assistant(parts, param) if role == "assistant"
                     else [_plain(role, parts, param)])
        out += converted
        origins += [index] * len(converted)
    return out, origins


def translate(body: dict[str, Any]) -> ChatRequest:
    """Translate a decoded `DefaultChatTransport` body; raises ApiError (400)."""
    chat_id = _string(body.get("id"), "id", limit=MAX_CHAT_ID_CHARS)
    if body.get("trigger") not in TRIGGERS:
        raise invalid("trigger must be submit-message or regenerate-message", "trigger")
    message_id = body.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        raise invalid("messageId must be a string", "messageId")
    messages, origins = translate_messages(body.get("messages"))
    generation = {k: v for k, v in body.items() if k not in TRANSPORT_FIELDS}
    generation["messages"] = messages
    return ChatRequest(chat_id, generation, origins)


def client_param(param: str | None, request: ChatRequest) -> str | None:
    """A core validation `param` in the client's terms (`messages.4.content` → `messages.2`)."""
    if param is None or not param.startswith("messages."):
        return param
    index = param.split(".")[1]
    if index.isdigit() and int(index) < len(request.origins):
        return f"messages.{request.origins[int(index)]}"
    return "messages"
