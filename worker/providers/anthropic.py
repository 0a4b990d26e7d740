"""The `anthropic` kind: Messages through the `anthropic` SDK (2.x), for Anthropic or a proxy.

Requests are translated from the API's OpenAI-style shape: `system` goes to
the top level, tools get `input_schema`, assistant `tool_calls` become
`tool_use` blocks and `tool` messages `tool_result` blocks. `temperature` is
never sent (the current API version rejects it). The streamed body is read
raw and parsed with orjson (see `_sse`). The request is sent with the SDK's
own `post` (auth, version header, base URL, timeouts, status errors), not
the typed `messages.create`, whose argument handling we do not need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anthropic
import httpx2

from spool.provider_config import ProviderConfig
from worker.providers import _sse
from worker.providers._anthropic_request import request_params
from worker.providers._sdk import PLACEHOLDER_KEY, SDKProvider
from worker.providers.base import (
    Finish,
    Piece,
    ProviderError,
    TextDelta,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from spool.settings import Settings

MESSAGES_PATH = "/v1/messages"
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
ERROR_TYPES = {
    "overloaded_error": ("provider_error", True),
    "api_error": ("provider_error", True),
    "rate_limit_error": ("rate_limited", True),
    "timeout_error": ("timeout", True),
    "invalid_request_error": ("invalid_request", False),
    "request_too_large": ("invalid_request", False),
    "not_found_error": ("invalid_request", False),
    "authentication_error": ("provider_error", False),
    "permission_error": ("provider_error", False),
}


def build(settings: Settings, name: str = "anthropic") -> AnthropicProvider:
    """The adapter for the configured provider `name` (of kind `anthropic`)."""
    return AnthropicProvider(settings.providers[name])


def stream_error(body: Any) -> ProviderError:
    """An `error` event inside a stream (the SDK would raise APIStatusError with status 200)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ProviderError("provider_error", "anthropic stream error", retryable=True)
    kind = str(error.get("type") or "")
    api_type, retryable = ERROR_TYPES.get(kind, ("provider_error", True))
    message = error.get("message") or kind or "stream error"
    return ProviderError(api_type, f"anthropic stream error ({kind}): {message}",
                         retryable=retryable, status=529 if kind == "overloaded_error" else None)


class AnthropicStream(_sse.SSEStream):
    """Messages stream events → pieces; complete only once `message_stop` is seen."""

    vendor = "anthropic"

    def __init__(self, response: httpx2.Response,
                 release: Callable[[], None] | None = None) -> None:
        super().__init__(response, release)
        self._tool_index: dict[int, int] = {}  # content block index → tool call ordinal
        self._tool_args: dict[int, int] = {}  # block index → argument characters seen
        self._input_tokens = 0
        self._stop = "stop"

    def __iter__(self) -> Iterator[Piece]:
        for name, data in self._events():
            if name == b"ping":
                continue
            event = _sse.loads(data)
            kind = event.get("type")
            if kind == "content_block_delta":
                piece = self._delta(event)
                if piece is not None:
                    yield piece
            elif kind == "message_stop":
                self.finished = True
                yield Finish(self._stop)
                self.drain()
                return
            else:
                yield from self._other(kind, event)

    def _delta(self, event: dict[str, Any]) -> Piece | None:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return TextDelta(delta["text"]) if delta.get("text") else None
        if kind == "input_json_delta":
            block = event.get("index", 0)
            ordinal = self._tool_index.get(block)
            fragment = delta.get("partial_json") or ""
            if ordinal is None or not fragment:
                return None
            self._tool_args[block] += len(fragment)
            return ToolCallDelta(index=ordinal, arguments=fragment)
        return None  # thinking, signature and citation deltas carry no answer text

    def _other(self, kind: Any, event: dict[str, Any]) -> Iterator[Piece]:
        if kind == "message_start":
            usage = (event.get("message") or {}).get("usage") or {}
            self._input_tokens = usage.get("input_tokens") or 0
            yield Usage(self._input_tokens, usage.get("output_tokens") or 0)
        elif kind == "content_block_start":
            yield from self._block_start(event)
        elif kind == "content_block_stop":
            block = event.get("index", 0)
            if block in self._tool_index and not self._tool_args[block]:
                # A tool called with no input streams no JSON at all; the runner needs some.
                yield ToolCallDelta(index=self._tool_index[block], arguments="{}")
        elif kind == "message_delta":
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason:
                self._stop = STOP_REASONS.get(reason, "stop")
            usage = event.get("usage") or {}
            # Cumulative counts: they replace the earlier ones, never add to them.
            self._input_tokens = usage.get("input_tokens") or self._input_tokens
            yield Usage(self._input_tokens, usage.get("output_tokens") or 0)
        elif kind == "error":
            raise stream_error(event)

    def _block_start(self, event: dict[str, Any]) -> Iterator[Piece]:
        block = event.get("content_block") or {}
        index = event.get("index", 0)
        if block.get("type") == "tool_use":
            ordinal = len(self._tool_index)
            self._tool_index[index] = ordinal
            self._tool_args[index] = 0
            yield ToolCallDelta(index=ordinal, id=block.get("id"), name=block.get("name"))
        elif block.get("type") == "text" and block.get("text"):
            yield TextDelta(block["text"])


class AnthropicProvider(SDKProvider):
    """A provider of kind `anthropic` (Messages API): Anthropic, or a compatible proxy."""

    kind = "anthropic"
    stream_class = AnthropicStream
    sdk_error_class = anthropic.AnthropicError
    status_error_class = anthropic.APIStatusError
    http_client_class = anthropic.DefaultHttpxClient

    def make_client(self, config: ProviderConfig, timeout: httpx2.Timeout,
                    http_client: httpx2.Client) -> anthropic.Anthropic:
        """An `anthropic.Anthropic` client over `http_client`, SDK retries off."""
        return anthropic.Anthropic(api_key=config.api_key or PLACEHOLDER_KEY,
                                   base_url=config.base_url, max_retries=0, timeout=timeout,
                                   http_client=http_client)

    def send(self, client: anthropic.Anthropic, body: bytes) -> httpx2.Response:
        """POST `/v1/messages` with the SDK's `post`, the response streamed, unread."""
        # Typed by the SDK as the `stream_cls` it would parse into; with `cast_to`
        # a response class it returns the response itself (`open` checks).
        response: Any = client.post(MESSAGES_PATH, cast_to=httpx2.Response, content=body,
                                    stream=True, stream_cls=anthropic.Stream[Any])
        return response

    def params(self, request: dict[str, Any]) -> dict[str, Any]:
        """The Messages API body (translated from the API's OpenAI-style shape)."""
        return request_params(request, self.default_model)

    def status_message(self, exc: Any) -> str:
        """The body's `error.message` when the SDK found one."""
        return str(exc.api_message or exc.message)
