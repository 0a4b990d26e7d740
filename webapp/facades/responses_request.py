"""OpenAI Responses API request → a Spool generation request (pure, no Flask).

`input` (a string, or input items: messages with `input_text`/`output_text`
parts, `function_call` and `function_call_output` items) becomes Spool's
OpenAI-shaped `messages`, `instructions` its `system`, function `tools` and
`tool_choice` Chat Completions' shapes; the core then validates the result
as usual. What Spool cannot honour is a 400 naming the parameter, except
hints that do not change what a correct answer looks like (IGNORED_PARAMS,
listed in docs/responses.md). Besides the generation, the translation keeps
what the response object echoes (`echo`), stored with the generation.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from spool.schemas import BUILTIN_PROVIDER_NAMES
from webapp.facades.chat_request import check_params, invalid, split_model

IGNORED_PARAMS = frozenset({
    "top_p", "parallel_tool_calls", "store", "service_tier", "prompt_cache_key",
    "prompt_cache_retention", "safety_identifier", "reasoning", "stream_options",
})
OFF_VALUES: dict[str, tuple[Any, ...]] = {
    "previous_response_id": (None,),
    "conversation": (None,),
    "prompt": (None,),
    "include": (None, []),
    "max_tool_calls": (None,),
    "top_logprobs": (None, 0),
    "truncation": (None, "disabled", "auto"),
}
HANDLED_PARAMS = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "max_output_tokens",
    "temperature", "metadata", "stream", "background", "mock", "text", "user",
})
ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
# Text part types each role may send (an SDK echoes an earlier answer's output_text back).
PART_TYPES = {"user": ("input_text",), "system": ("input_text",), "assistant": ("output_text",
                                                                              "input_text")}
# Fields of an output item an SDK sends back unchanged (`input += response.output`).
ECHOED_ITEM_FIELDS = frozenset({"id", "status", "phase"})
ECHOED_PART_FIELDS = frozenset({"annotations", "logprobs"})
TOOL_FIELDS = frozenset({"type", "name", "description", "parameters", "strict"})
TEXT_FORMATS = ("text", "json_object")
TEXT_PART_JOINER = "\n"


@dataclass(frozen=True)
class ResponsesRequest:
    """A translated request: the generation body, how to answer, and what to echo."""

    generation: dict[str, Any]  # the body of POST /v1/generations
    echo: dict[str, Any]  # request fields the response object repeats
    stream: bool
    background: bool
    origins: list[int]  # origins[n]: the `input` item Spool message n came from


def _string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise invalid(f"{param} must be a string", param)
    return value


def _parts(content: Any, role: str, param: str) -> str:
    """A message's content: a string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"{param} must be a string or an array of content parts", param)
    texts: list[str] = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict) or part.get("type") not in PART_TYPES[role]:
            kinds = " or ".join(PART_TYPES[role])
            raise invalid(f"only {kinds} content parts are supported for role {role}", where,
                          "unsupported_content")
        for name in part:
            if name not in ("type", "text") and name not in ECHOED_PART_FIELDS:
                raise invalid(f"unknown field {name} in a content part", f"{where}.{name}")
        texts.append(_string(part.get("text"), f"{where}.text"))
    return TEXT_PART_JOINER.join(texts)


def _known_fields(item: dict[str, Any], fields: Collection[str], param: str) -> None:
    for name in item:
        if name not in fields and name not in ECHOED_ITEM_FIELDS:
            raise invalid(f"unknown field {name} in an input item", f"{param}.{name}")


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    _known_fields(item, ("type", "role", "content"), param)
    role = item.get("role")
    if role not in ROLES:
        raise invalid(f"{param}.role must be one of {', '.join(ROLES)}", f"{param}.role")
    role = ROLES[role]
    return {"role": role, "content": _parts(item.get("content"), role, f"{param}.content")}


def _call(item: dict[str, Any], param: str) -> dict[str, Any]:
    _known_fields(item, ("type", "call_id", "name", "arguments"), param)
    return {"id": _string(item.get("call_id"), f"{param}.call_id"), "type": "function",
            "function": {"name": _string(item.get("name"), f"{param}.name"),
                         "arguments": _string(item.get("arguments"), f"{param}.arguments")}}


def _output(item: dict[str, Any], param: str) -> dict[str, Any]:
    _known_fields(item, ("type", "call_id", "output"), param)
    output = item.get("output")
    content = output if isinstance(output, str) else _parts(output, "user", f"{param}.output")
    return {"role": "tool", "tool_call_id": _string(item.get("call_id"), f"{param}.call_id"),
            "content": content}


def translate_input(value: Any) -> tuple[list[dict[str, Any]], list[int]]:
    """`input` → (Spool messages, the input item index of each).

    Consecutive `function_call` items join the assistant message before them
    (one assistant turn with its calls), as Chat Completions has them.
    """
    if isinstance(value, str):
        return [{"role": "user", "content": value}], [0]
    if not isinstance(value, list) or not value:
        raise invalid("input must be a string or a non-empty array of input items", "input")
    messages: list[dict[str, Any]] = []
    origins: list[int] = []
    for index, item in enumerate(value):
        param = f"input[{index}]"
        if not isinstance(item, dict):
            raise invalid(f"{param} must be an object", param)
        kind = item.get("type", "message")
        if kind == "function_call":
            call = _call(item, param)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if not last["content"]:
                    last["content"] = None
                continue
            message: dict[str, Any] = {"role": "assistant", "content": None,
                                       "tool_calls": [call]}
        elif kind == "function_call_output":
            message = _output(item, param)
        elif kind == "message":
            message = _message(item, param)
        else:
            raise invalid(f"input items of type {kind!r} are not supported (message, "
                          "function_call, function_call_output and item_reference are)",
                          f"{param}.type", "unsupported_value")
        messages.append(message)
        origins.append(index)
    return messages, origins


def _tool(tool: Any, param: str) -> dict[str, Any]:
    """A Responses function tool → Chat Completions' shape."""
    if not isinstance(tool, dict):
        raise invalid(f"{param} must be an object", param)
    if tool.get("type") != "function":
        raise invalid("only function tools are supported", f"{param}.type", "unsupported_value")
    for name in tool:
        if name not in TOOL_FIELDS:
            raise invalid(f"unknown field {name} in a tool", f"{param}.{name}")
    function = {k: tool[k] for k in ("name", "description", "parameters")
                if tool.get(k) is not None}
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    """tool_choice in Chat Completions' shape (`{type: function, name}` → `function.name`)."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and set(choice) <= {
            "type", "name"}:
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise invalid('tool_choice must be "auto", "none", "required" or {"type": "function", '
                  '"name": …}', "tool_choice", "unsupported_value")


def _text_format(text: Any) -> str:
    """The `text.format.type` (text or json_object)."""
    if text is None:
        return "text"
    if not isinstance(text, dict):
        raise invalid("text must be an object", "text")
    fmt = text.get("format")
    if fmt is None:
        return "text"
    if not isinstance(fmt, dict) or fmt.get("type") not in TEXT_FORMATS:
        raise invalid('text.format supports {"type": "text"} and {"type": "json_object"} '
                      "only", "text.format", "unsupported_value")
    return str(fmt["type"])


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid(f"{name} must be a boolean", name)
    return bool(value)


def _echo(body: dict[str, Any], background: bool, text_format: str) -> dict[str, Any]:
    """The request fields a response object repeats (normalized as OpenAI does)."""
    tools: list[Any] = body["tools"] if isinstance(body.get("tools"), list) else []
    return {
        "model": body["model"],
        "instructions": body.get("instructions"),
        "tools": [{"type": "function", "name": t.get("name"),
                   "description": t.get("description"), "parameters": t.get("parameters"),
                   "strict": t.get("strict", True)} for t in tools],
        "tool_choice": body.get("tool_choice") or "auto",
        "max_output_tokens": body.get("max_output_tokens"),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "background": background,
        "text": {"format": {"type": text_format}},
        "truncation": body.get("truncation") or "disabled",
    }


def translate(body: dict[str, Any], default_provider: str,
              providers: Collection[str] = BUILTIN_PROVIDER_NAMES) -> ResponsesRequest:
    """Translate a decoded Responses API body; raises FacadeError."""
    check_params(body, HANDLED_PARAMS, IGNORED_PARAMS, OFF_VALUES)
    provider, model = split_model(body.get("model"), default_provider, providers)
    stream, background = _flag(body, "stream"), _flag(body, "background")
    if "input" not in body:
        raise invalid("you must provide an input parameter", "input", "missing_required_parameter")
    messages, origins = translate_input(body["input"])
    generation: dict[str, Any] = {"provider": provider, "messages": messages}
    if model is not None:
        generation["model"] = model
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise invalid("tools must be an array", "tools")
    converted = [_tool(t, f"tools[{i}]") for i, t in enumerate(tools or [])]
    choice = _tool_choice(body.get("tool_choice"))
    if converted and choice != "none":
        generation["tools"] = converted
        if choice is not None:
            generation["tool_choice"] = choice
    text_format = _text_format(body.get("text"))
    if text_format != "text":
        generation["response_format"] = {"type": text_format}
    metadata = body.get("metadata")
    if body.get("user") is not None and (metadata is None or isinstance(metadata, dict)):
        metadata = {"user": body["user"], **(metadata or {})}
    for name, value in (("system", body.get("instructions")),
                        ("max_tokens", body.get("max_output_tokens")),
                        ("temperature", body.get("temperature")), ("metadata", metadata),
                        ("mock", body.get("mock"))):
        if value is not None:
            generation[name] = value
    return ResponsesRequest(generation, _echo(body, background, text_format), stream,
                            background, origins)


# Core field -> the Responses parameter that carries it.
CORE_PARAMS = {"system": "instructions", "max_tokens": "max_output_tokens", "provider": "model",
               "response_format": "text.format", "tool_choice": "tool_choice"}


def client_param(param: str | None, request: ResponsesRequest) -> str | None:
    """A core validation `param` in the client's terms (`messages.2.content` → `input[1]`)."""
    if param is None:
        return None
    parts = param.split(".")
    if parts[0] in CORE_PARAMS:
        return CORE_PARAMS[parts[0]]
    if parts[0] == "messages":
        if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(request.origins):
            return f"input[{request.origins[int(parts[1])]}]"
        return "input"
    if parts[0] == "tools" and len(parts) > 1 and parts[1].isdigit():
        return f"tools[{parts[1]}]" + (f".{parts[-1]}" if len(parts) > 2 else "")
    return ".".join(parts)
