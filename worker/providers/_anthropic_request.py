"""Translate an API request (OpenAI-style messages and tools) into Messages API arguments."""

from __future__ import annotations

from typing import Any

import orjson

EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI function tool as an Anthropic tool definition."""
    function = tool.get("function") or tool
    out: dict[str, Any] = {
        "name": function["name"],
        "input_schema": function.get("parameters") or EMPTY_SCHEMA,
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _arguments(raw: Any) -> Any:
    """Tool-call arguments (a JSON string in OpenAI form) as an object."""
    if not isinstance(raw, str):
        return raw or {}
    try:
        return orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        return {"_raw": raw}  # keep the model's malformed arguments visible rather than fail


def _assistant(message: dict[str, Any]) -> dict[str, Any] | None:
    content = message.get("content") or ""
    calls = message.get("tool_calls") or []
    if not calls:
        return {"role": "assistant", "content": content} if content else None
    blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    for call in calls:
        function = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                       "input": _arguments(function.get("arguments"))})
    return {"role": "assistant", "content": blocks}


def translate_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(Anthropic messages, system texts found among the messages).

    `tool` results become `tool_result` blocks in a user turn; consecutive
    results share one turn, as the API requires after a multi-tool call.
    """
    out: list[dict[str, Any]] = []
    system: list[str] = []
    for message in messages:
        role = message.get("role")
        if role == "system":
            system.append(message.get("content") or "")
        elif role == "assistant":
            converted = _assistant(message)
            if converted is not None:
                out.append(converted)
        elif role == "tool":
            block = {"type": "tool_result", "tool_use_id": message.get("tool_call_id"),
                     "content": message.get("content") or ""}
            last = out[-1] if out else None
            if last and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        else:
            out.append({"role": "user", "content": message.get("content") or ""})
    return out, system


def request_params(request: dict[str, Any], default_model: str) -> dict[str, Any]:
    """The `messages.create` keyword arguments for an API request (never `temperature`)."""
    messages, system = translate_messages(request.get("messages") or [])
    if request.get("system"):
        system.insert(0, request["system"])
    params: dict[str, Any] = {
        "model": request.get("model") or default_model,
        "messages": messages,
        "max_tokens": request["max_tokens"],
        "stream": True,
    }
    if system:
        params["system"] = "\n\n".join(s for s in system if s)
    if request.get("tools"):
        params["tools"] = [_tool(t) for t in request["tools"]]
        choice = tool_choice(request.get("tool_choice"))
        if choice is not None:
            params["tool_choice"] = choice
    return params


def tool_choice(choice: Any) -> dict[str, Any] | None:
    """OpenAI's tool_choice in the Messages API's shape (None: leave the default)."""
    if choice is None:
        return None
    if isinstance(choice, dict):
        return {"type": "tool", "name": choice["function"]["name"]}
    return {"auto": {"type": "auto"}, "required": {"type": "any"},
            "none": {"type": "none"}}[choice]
