"""OpenAI Chat Completions request → a Spool generation request (pure, no Flask).

The facade accepts what OpenAI's SDKs send and translates it into the body
of `POST /v1/generations`, which the core then validates as usual. What
Spool cannot honour is refused with OpenAI's error shape rather than
silently dropped, except sampling hints that do not change what a correct
answer looks like (listed in IGNORED_PARAMS, documented in docs/facade.md).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from spool.schemas import BUILTIN_PROVIDER_NAMES

# Accepted for compatibility, not forwarded to the provider.
IGNORED_PARAMS = frozenset({
    "top_p", "seed", "presence_penalty", "frequency_penalty", "parallel_tool_calls",
    "store", "service_tier", "prompt_cache_key", "safety_identifier", "reasoning_effort",
    "verbosity", "logit_bias",
})
# Accepted only with these "off" values: any other value changes the answer's shape.
OFF_VALUES: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "stop": (None, [], ""),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "functions": (None, []),
    "function_call": (None,),
    "web_search_options": (None,),
}
HANDLED_PARAMS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "tools",
    "tool_choice", "stream", "stream_options", "user", "metadata", "mock", "response_format",
})
ROLES = {"system": "system", "developer": "system", "user": "user",
         "assistant": "assistant", "tool": "tool"}
MESSAGE_FIELDS = ("role", "content", "name", "tool_call_id", "tool_calls")
# Fields an SDK echoes back in an assistant message (`message.model_dump()`).
ECHOED_MESSAGE_FIELDS = frozenset({"refusal", "annotations", "audio", "function_call"})
TEXT_PART_JOINER = "\n"


class FacadeError(Exception):
    """A request error in OpenAI's shape: `{"error": {message, type, param, code}}`."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type


@dataclass(frozen=True)
class CompletionRequest:
    """A translated request: the generation body plus how to answer."""

    generation: dict[str, Any]  # the body of POST /v1/generations
    model: str  # echoed in every response, exactly as the client sent it
    stream: bool
    include_usage: bool
    max_tokens_param: str  # the name the client used, for error messages


def invalid(message: str, param: str | None, code: str = "invalid_value") -> FacadeError:
    """A 400 invalid_request_error."""
    return FacadeError(400, message, param=param, code=code)


def split_model(model: Any, default_provider: str,
                providers: Collection[str] = BUILTIN_PROVIDER_NAMES) -> tuple[str, str | None]:
    """(provider, model name) from `provider/model`; no prefix means the default provider.

    `providers` are the names a prefix may use: pass `Settings.provider_names`
    so SPOOL_PROVIDERS names work (`local/llama3.2`). Only the first `/`
    splits, so `local/Qwen/Qwen2.5-7B-Instruct` names the model
    `Qwen/Qwen2.5-7B-Instruct`. Every facade resolves `model` here.
    """
    if not isinstance(model, str) or not model.strip():
        raise invalid("you must provide a model parameter", "model", "missing_model")
    prefix, sep, name = model.partition("/")
    if not sep:
        return default_provider, model
    if prefix not in providers:
        raise invalid(
            f"The model `{model}` does not exist: prefix it with one of "
            + ", ".join(f"{p}/" for p in providers) + " (or give no prefix for the default "
            "provider)", "model", "model_not_found")
    if not name:
        return prefix, None
    return prefix, name


def _content(content: Any, param: str) -> Any:
    """String content as is; text parts joined; any other part refused."""
    if not isinstance(content, list):
        return content
    texts: list[str] = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise invalid("only text content parts are supported", f"{param}[{index}]",
                          "unsupported_content")
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid("a text content part needs a string `text`", f"{param}[{index}].text")
        texts.append(text)
    return TEXT_PART_JOINER.join(texts)


def _message(message: Any, index: int) -> Any:
    param = f"messages[{index}]"
    if not isinstance(message, dict):
        return message  # the core's validation names the problem
    role = message.get("role")
    if role not in ROLES:
        raise invalid(f"{param}.role must be one of {', '.join(ROLES)}", f"{param}.role")
    out: dict[str, Any] = {"role": ROLES[role]}
    for name, value in message.items():
        if name == "content":
            out["content"] = _content(value, f"{param}.content")
        elif name in MESSAGE_FIELDS[2:]:
            if value is not None:
                out[name] = value
        elif name != "role" and not (name in ECHOED_MESSAGE_FIELDS and not value):
            out[name] = value  # unknown: the core refuses it with its name
    return out


def _tool(tool: Any) -> Any:
    if not isinstance(tool, dict) or not isinstance(tool.get("function"), dict):
        return tool
    function = {k: v for k, v in tool["function"].items() if k != "strict"}
    return {**tool, "function": function}


def _tools(body: dict[str, Any]) -> Any:
    """Tools, unless tool_choice is "none" (then the model gets none)."""
    choice = body.get("tool_choice")
    tools = body.get("tools")
    if choice == "none" or tools is None:
        return None
    return [_tool(t) for t in tools] if isinstance(tools, list) else tools


def check_params(body: dict[str, Any], handled: Collection[str], ignored: Collection[str],
                 off_values: dict[str, tuple[Any, ...]]) -> None:
    """Refuse what a facade does not know (`unknown_parameter`) or cannot honour
    (`unsupported_parameter`: a parameter of `off_values` set to another value)."""
    for name, value in body.items():
        if name in handled or name in ignored:
            continue
        if name in off_values:
            if value not in off_values[name]:
                raise invalid(f"{name} is not supported by this server", name,
                              "unsupported_parameter")
            continue
        raise invalid(f"Unrecognized request argument supplied: {name}", name,
                      "unknown_parameter")


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream must be a boolean", "stream")
    options = body.get("stream_options")
    if options is None:
        return bool(stream), False
    if not stream:
        raise invalid("The 'stream_options' parameter is only allowed when 'stream' is "
                      "enabled.", "stream_options")
    if not isinstance(options, dict):
        raise invalid("stream_options must be an object", "stream_options")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise invalid("stream_options.include_usage must be a boolean",
                      "stream_options.include_usage")
    return True, include


def _response_format(value: Any) -> Any:
    if isinstance(value, dict) and value.get("type") not in ("text", "json_object"):
        raise invalid('response_format supports "text" and "json_object" only',
                      "response_format", "unsupported_value")
    return value


def translate(body: dict[str, Any], default_provider: str,
              providers: Collection[str] = BUILTIN_PROVIDER_NAMES) -> CompletionRequest:
    """Translate a decoded Chat Completions body; raises FacadeError."""
    check_params(body, HANDLED_PARAMS, IGNORED_PARAMS, OFF_VALUES)
    provider, model = split_model(body.get("model"), default_provider, providers)
    stream, include_usage = _stream_flags(body)
    messages = body.get("messages")
    if messages is None:
        raise invalid("you must provide a messages parameter", "messages", "missing_messages")
    generation: dict[str, Any] = {
        "provider": provider,
        "messages": ([_message(m, i) for i, m in enumerate(messages)]
                     if isinstance(messages, list) else messages),
    }
    if model is not None:
        generation["model"] = model
    max_param = "max_completion_tokens" if body.get("max_completion_tokens") is not None \
        else "max_tokens"
    if body.get(max_param) is not None:
        generation["max_tokens"] = body[max_param]
    tools = _tools(body)
    if tools is not None:
        generation["tools"] = tools
        if body.get("tool_choice") is not None:
            generation["tool_choice"] = body["tool_choice"]
    metadata = body.get("metadata")
    if body.get("user") is not None and (metadata is None or isinstance(metadata, dict)):
        metadata = {"user": body["user"], **(metadata or {})}
    for name, value in (("temperature", body.get("temperature")), ("metadata", metadata),
                        ("mock", body.get("mock")),
                        ("response_format", _response_format(body.get("response_format")))):
        if value is not None:
            generation[name] = value
    return CompletionRequest(generation, body["model"], stream, include_usage, max_param)


def core_param(param: str | None, request: CompletionRequest | None) -> str | None:
    """A core validation `param` in the client's terms (`messages.0.role` → `messages[0].role`)."""
    if param is None:
        return None
    if param == "max_tokens" and request is not None:
        return request.max_tokens_param
    if param == "provider":
        return "model"
    parts = param.split(".")
    out = parts[0]
    for part in parts[1:]:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out
