"""Response and event schemas (pydantic), for the OpenAPI document.

Requests are validated by `spool.schemas`; these models describe what the
server answers, so `GET /openapi.json` states both sides from code, and the
fuzz test checks every response against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["queued", "in_progress", "completed", "failed", "cancelled"]
FinishReason = Literal[
    "stop", "length", "tool_calls", "content_filter", "cancelled", "abandoned", "error"
]


class _Out(BaseModel):
    # Responses may grow fields (additive changes are not breaking).
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Out):
    type: str
    message: str
    param: str | None


class ErrorBody(_Out):
    """Every non-2xx JSON response."""

    error: ErrorDetail


class TimeoutBody(ErrorBody):
    """`POST /v1/chat` past its time limit: the generation keeps running."""

    id: str


class CreatedGeneration(_Out):
    id: str = Field(pattern=r"^gen_[A-Za-z0-9_-]{22,}$")
    object: Literal["generation"]
    status: Status
    stream_url: str
    created_at: str


class ToolCallView(_Out):
    id: str
    name: str
    arguments: dict[str, Any]


class Usage(_Out):
    input_tokens: int | None
    output_tokens: int | None


class Metrics(_Out):
    queue_ms: int | None
    ttft_ms: int | None
    duration_ms: int | None
    tokens_per_second: float | None


class GenerationError(_Out):
    type: str
    message: str


class GenerationView(_Out):
    """`GET /v1/generations/{id}` and the `200` of `POST /v1/chat`."""

    id: str
    object: Literal["generation"]
    status: Status
    provider: str
    model: str
    text: str
    tool_calls: list[ToolCallView]
    finish_reason: FinishReason | None
    usage: Usage | None
    error: GenerationError | None
    metrics: Metrics
    last_event_id: int
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    metadata: dict[str, str]
    parsed: Any = None
    # GET only: readers attached right now, across every web process.
    readers: int | None = None


class CancelAccepted(_Out):
    id: str
    status: Status


class ModelEntry(_Out):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(_Out):
    object: Literal["list"]
    data: list[ModelEntry]


class Health(_Out):
    status: str


class Readiness(_Out):
    status: str
    redis: bool
    workers: int
    # Only when Redis answers but refuses writes (maxmemory, READONLY, MISCONF).
    writable: bool | None = None
    reason: str | None = None


# -- batches --------------------------------------------------------------------
BatchStatus = Literal["queued", "in_progress", "completed", "cancelled"]


class BatchRow(_Out):
    """One row of `POST /v1/batches`: `custom_id` plus any `POST /v1/generations` field."""

    custom_id: str = Field(min_length=1)


class BatchRequest(_Out):
    """`POST /v1/batches` as JSON (or the rows alone as NDJSON, one per line)."""

    requests: list[BatchRow]
    metadata: dict[str, str] | None = None
    idempotency_key: str | None = None


class BatchView(_Out):
    """`GET /v1/batches/{id}`, and the `202` of create and cancel."""

    id: str = Field(pattern=r"^batch_")
    object: Literal["batch"]
    status: BatchStatus
    total: int
    completed: int
    failed: int
    cancelled: int
    created_at: str | None
    finished_at: str | None
    metadata: dict[str, str] = {}


class BatchResultLine(_Out):
    """One NDJSON line of `GET /v1/batches/{id}/results`."""

    custom_id: str
    generation_id: str
    status: str
    text: str
    tool_calls: list[ToolCallView]
    usage: Usage | None
    error: GenerationError | None


class BatchProgressEvent(_Out):
    """`progress` of a batch's stream; `done` and `cancelled` add `status` (and `reason`)."""

    completed: int
    failed: int
    cancelled: int
    total: int
    status: BatchStatus | None = None
    reason: str | None = None


# -- the `data:` of each SSE event ---------------------------------------------
class StatusEvent(_Out):
    status: Literal["queued", "in_progress"]


class DeltaEvent(_Out):
    text: str


class ToolCallEvent(_Out):
    index: int
    id: str
    name: str
    arguments: dict[str, Any]


class NoticeEvent(_Out):
    message: str


class DoneEvent(_Out):
    finish_reason: FinishReason
    usage: Usage | None
    metrics: Metrics


class ErrorEvent(_Out):
    type: str
    message: str
    retryable: bool


class CancelledEvent(_Out):
    reason: Literal["user", "abandoned"]


EVENT_SCHEMAS: dict[str, type[BaseModel]] = {
    "status": StatusEvent,
    "delta": DeltaEvent,
    "tool_call": ToolCallEvent,
    "notice": NoticeEvent,
    "done": DoneEvent,
    "error": ErrorEvent,
    "cancelled": CancelledEvent,
}


# -- the OpenAI-compatible facade (OpenAI's shapes) -----------------------------
class OpenAIErrorDetail(_Out):
    message: str
    type: str
    param: str | None
    # Absent when the path matched no route at all (the core's 404 answers then).
    code: str | None = None


class OpenAIErrorBody(_Out):
    """Errors of `/v1/chat/completions` and `/v1/models…`, in OpenAI's shape."""

    error: OpenAIErrorDetail


class ChatCompletionRequest(_Out):
    """OpenAI's Chat Completions request, as far as Spool honours it.

    `model` may be prefixed `openai/`, `anthropic/` or `mock/`. The facade's
    translator validates the rest (docs/facade.md): sampling hints Spool does
    not forward are accepted and ignored, anything that would change the
    answer's shape is refused.
    """

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None


class UIMessage(_Out):
    """A Vercel AI SDK UI message; its text and tool parts reach the model (docs/ai-sdk.md)."""

    id: str | None = None
    role: Literal["system", "user", "assistant"]
    parts: list[dict[str, Any]]


class AiSdkChatRequest(_Out):
    """What the AI SDK's `DefaultChatTransport` posts (`id` is the chat id).

    Any field of GenerationRequest except `messages` may be added at the top
    level (the transport's `body` option): `provider`, `model`, `max_tokens`,
    `tools`, `mock`, …; anything else is a 400 naming it.
    """

    id: str = Field(min_length=1, max_length=256)
    messages: list[UIMessage] = Field(min_length=1)
    trigger: Literal["submit-message", "regenerate-message"] | None = None
    messageId: str | None = None  # camelCase: the transport's name


class ChatCompletion(_Out):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, Any] | None


# -- the Responses API facade (OpenAI's shapes, docs/responses.md) ----------------
class ResponsesCreateRequest(_Out):
    """OpenAI's Responses API request, as far as Spool honours it.

    `model` may carry a provider prefix as in Chat Completions; `input` is a
    string or input items (messages with text parts, `function_call`,
    `function_call_output`). The translator validates the rest: hints Spool
    does not forward are ignored, anything that would change the answer is
    refused naming the parameter.
    """

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    metadata: dict[str, str] | None = None
    stream: bool | None = None
    background: bool | None = None
    store: bool | None = None
    text: dict[str, Any] | None = None
    mock: dict[str, Any] | None = None


class ResponseObject(_Out):
    """A response (`GET /v1/responses/{id}`; the last stream event carries the same)."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["queued", "in_progress", "completed", "failed", "cancelled", "incomplete"]
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None
    error: dict[str, Any] | None
    incomplete_details: dict[str, Any] | None
    background: bool | None = None
    metadata: dict[str, str] | None = None
