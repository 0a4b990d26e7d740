"""Request schemas (pydantic): the single source for validation and OpenAPI.

Strict mode: `"5"` is not an int and `true` is not a number, so a wrong type
is a 400 rather than a silent coercion.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from spool.provider_config import BUILTIN, NAME_RE, PRESETS

MAX_MESSAGES = 1000
MAX_CONTENT_CHARS = 500_000
MAX_TOOLS = 128
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_MOCK_TOOL_CALLS = 16
DEFAULT_MAX_TOKENS = 1024
MAX_FAIL_AFTER_TOKENS = 1_000_000
MAX_ABANDON_AFTER_S = 7 * 86400
MAX_JSON_DEPTH = 64  # request bodies nest no deeper than this (orjson writes <= 254)

Role = Literal["system", "user", "assistant", "tool"]
# Any configured name (SPOOL_PROVIDERS): the shape here, the name's existence
# in parse_generation_request. A request names a provider, never a URL or key.
ProviderName = Annotated[str, StringConstraints(pattern=NAME_RE.pattern)]
BUILTIN_PROVIDER_NAMES = BUILTIN + PRESETS


def _integral_float(value: Any) -> Any:
    # JSON has one number type: 5.0 is the integer 5 (JSON Schema agrees),
    # while "5", true and 5.5 stay errors under strict validation.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Bounds on an optional field go before the validator, or the OpenAPI document loses them.
Int = Annotated[int, BeforeValidator(_integral_float)]
# Expressed as types (not a validator) so the OpenAPI document states them too.
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_METADATA_KEY_CHARS)]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE_CHARS)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class ToolCallFunction(_Strict):
    name: str = Field(min_length=1, max_length=128)
    arguments: str = Field(max_length=MAX_CONTENT_CHARS)


class AssistantToolCall(_Strict):
    """A tool call the assistant made earlier in the conversation (OpenAI shape)."""

    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: ToolCallFunction


class Message(_Strict):
    role: Role
    content: str | None = Field(default="", max_length=MAX_CONTENT_CHARS)
    name: str | None = Field(default=None, max_length=128)
    tool_call_id: str | None = Field(default=None, max_length=256)
    tool_calls: list[AssistantToolCall] | None = Field(default=None, max_length=MAX_TOOLS)


class FunctionSpec(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = Field(default=None, max_length=4096)
    parameters: dict[str, Any] | None = None


class Tool(_Strict):
    """An OpenAI-style function tool (translated for Anthropic by the worker)."""

    type: Literal["function"]
    function: FunctionSpec


class ToolChoiceFunction(_Strict):
    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(_Strict):
    """Force one named tool (OpenAI's shape)."""

    type: Literal["function"]
    function: ToolChoiceFunction


# "auto": the model decides; "none": no tool; "required": some tool; or one named tool.
# Without `tools` it has nothing to choose from and is not sent to the provider.
ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


class MockToolCall(_Strict):
    name: str = Field(min_length=1, max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)


class MockOptions(_Strict):
    """Options of the deterministic `mock` provider (API.md)."""

    text: str | None = Field(default=None, max_length=MAX_CONTENT_CHARS)
    tokens_per_second: float = Field(default=40, ge=0, le=100_000)
    ttft_ms: Int = Field(default=300, ge=0, le=600_000)
    chunk: Literal["token", "char"] = "token"
    fail_after_tokens: (
        Annotated[int, Field(ge=0, le=MAX_FAIL_AFTER_TOKENS), BeforeValidator(_integral_float)]
        | None
    ) = None
    fail_with: Literal["rate_limit", "server_error", "timeout", "content_filter"] = "server_error"
    tool_calls: list[MockToolCall] | None = Field(default=None, max_length=MAX_MOCK_TOOL_CALLS)


class ResponseFormat(_Strict):
    type: Literal["text", "json_object"]


class GenerationRequest(_Strict):
    """Body of `POST /v1/generations` (and `/v1/chat`, and each batch row)."""

    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    system: str | None = Field(default=None, max_length=MAX_CONTENT_CHARS)
    provider: ProviderName | None = None
    model: str | None = Field(default=None, min_length=1, max_length=200)
    max_tokens: Int = Field(default=DEFAULT_MAX_TOKENS, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    tools: list[Tool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    buffer: Literal["none", "word", "sentence"] = "none"
    priority: Literal["interactive", "batch"] = "interactive"
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict, max_length=MAX_METADATA_KEYS
    )
    mock: MockOptions = Field(default_factory=MockOptions)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)
    abandon_after_s: (
        Annotated[int, Field(ge=1, le=MAX_ABANDON_AFTER_S), BeforeValidator(_integral_float)]
        | None
    ) = None
    response_format: ResponseFormat | None = None


class RequestError(ValueError):
    """A request failed validation; `param` names the offending field."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def first_error(exc: ValidationError, prefix: str = "") -> RequestError:
    """The first validation error, as a message and a dotted `param`."""
    err = exc.errors(include_url=False)[0]
    # A bad dict key is reported at ("metadata", "<key>", "[key]"): name the dict.
    parts = list(err["loc"])
    if parts and parts[-1] == "[key]":
        parts = parts[:-2]
    loc = ".".join(str(part) for part in parts)
    param = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or None)
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown field"
    return RequestError(f"{param}: {message}" if param else message, param)


def parse_generation_request(
    payload: Any, *, max_tokens_limit: int, param_prefix: str = "",
    providers: Collection[str] = BUILTIN_PROVIDER_NAMES,
) -> GenerationRequest:
    """Validate a decoded JSON body; raises RequestError.

    `providers` are the names a request may use (`Settings.provider_names`);
    whether the chosen one is configured is checked when the generation starts.
    """
    if not isinstance(payload, dict):
        raise RequestError("request body must be a JSON object", param_prefix.rstrip(".") or None)
    try:
        request = GenerationRequest.model_validate(payload)
    except ValidationError as exc:
        raise first_error(exc, param_prefix) from None
    if request.max_tokens > max_tokens_limit:
        raise RequestError(
            f"max_tokens must be at most {max_tokens_limit}", f"{param_prefix}max_tokens"
        )
    if request.provider is not None and request.provider not in providers:
        raise RequestError(f"{param_prefix}provider: unknown provider {request.provider!r}; "
                           f"choose from {', '.join(providers)}", f"{param_prefix}provider")
    return request
