"""OpenAI Chat Completions (and any OpenAI-compatible server) through the `openai` SDK.

The SDK sends the request (auth, base URL, timeouts, status errors); the
streamed body is read raw and parsed with orjson (see `_sse`). With
`OPENAI_BASE_URL` set, the same adapter talks to vLLM, Ollama, llama.cpp or
a proxy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx2
import openai

from spool.catalog import default_model
from worker.providers import _sse
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

# OpenAI-compatible servers rarely need a key, but the SDK refuses to start without one.
PLACEHOLDER_KEY = "spool-no-key"
CONNECT_TIMEOUT_S = 10.0
# The SDK's read timeout is only a backstop: the resilience layer's gevent timeouts fire first.
READ_TIMEOUT_MARGIN_S = 30.0
MODELS_TIMEOUT_S = 5.0
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
IN_BAND_TYPES = {"rate_limit_exceeded": "rate_limited", "requests": "rate_limited",
                 "tokens": "rate_limited", "invalid_request_error": "invalid_request"}
_clients: dict[tuple[Any, ...], openai.OpenAI] = {}


def build(settings: Settings) -> OpenAIProvider:
    """The provider registry's entry point."""
    return OpenAIProvider(settings)


def _client(settings: Settings) -> openai.OpenAI:
    """One client (and connection pool) per configuration, made on first use.

    Made lazily so it is created after the worker's gevent patching; the
    SDK's own retries are off because `resilient` owns the retry policy.
    """
    read_s = max(settings.first_token_timeout_s, settings.idle_timeout_s) + READ_TIMEOUT_MARGIN_S
    key = (settings.openai_api_key, settings.openai_base_url, read_s)
    client = _clients.get(key)
    if client is None:
        client = openai.OpenAI(
            api_key=settings.openai_api_key or PLACEHOLDER_KEY,
            base_url=settings.openai_base_url,
            max_retries=0,
            timeout=httpx2.Timeout(read_s, connect=CONNECT_TIMEOUT_S),
        )
        _clients[key] = client
    return client


def _message(message: dict[str, Any]) -> dict[str, Any]:
    """An API message in Chat Completions form (None fields left out)."""
    out: dict[str, Any] = {"role": message["role"], "content": message.get("content")}
    for name in ("name", "tool_call_id", "tool_calls"):
        if message.get(name):
            out[name] = message[name]
    return out


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool definition without null fields (OpenAI rejects `"parameters": null`)."""
    function = {k: v for k, v in (tool.get("function") or {}).items() if v is not None}
    return {"type": "function", "function": function}


def request_params(request: dict[str, Any], default_model: str, compatible: bool) -> dict[str, Any]:
    """The `chat.completions.create` keyword arguments for an API request.

    `compatible` (a custom base URL) sends the older `max_tokens`, which every
    OpenAI-compatible server understands; OpenAI itself gets
    `max_completion_tokens`, which its newer models require.
    """
    messages = [_message(m) for m in request.get("messages") or []]
    if request.get("system"):
        messages.insert(0, {"role": "system", "content": request["system"]})
    params: dict[str, Any] = {
        "model": request.get("model") or default_model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    params["max_tokens" if compatible else "max_completion_tokens"] = request["max_tokens"]
    if request.get("temperature") is not None:
        params["temperature"] = request["temperature"]
    if request.get("tools"):
        params["tools"] = [_tool(t) for t in request["tools"]]
        if request.get("tool_choice") is not None:
            params["tool_choice"] = request["tool_choice"]
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_object":
        params["response_format"] = {"type": "json_object"}
    return params


def sdk_error(exc: Exception) -> ProviderError:
    """Map an `openai` SDK exception raised before the stream started."""
    if isinstance(exc, openai.APIStatusError):
        # The SDK already parsed `error.message` out of the body (dict) when there was one.
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") or exc.message
        return _sse.status_error("openai", exc.status_code, message, exc.response.headers)
    return _sse.transport_error("openai", exc)


class OpenAIStream(_sse.SSEStream):
    """Chat Completion chunks → pieces."""

    vendor = "openai"

    def __iter__(self) -> Iterator[Piece]:
        self._finish: str | None = None
        try:
            yield from self._pieces()
        except ProviderError:
            # A transport failure after the finish reason (say, before `[DONE]`) loses
            # nothing but the usage chunk: the answer itself is complete.
            if self._finish is None or self._closed:
                raise
        # The finish reason, not the end of the body, says the answer is complete.
        if self._finish is not None and not self._closed:
            self.finished = True
            yield Finish(self._finish)
            self.drain()

    def _pieces(self) -> Iterator[Piece]:
        for _name, data in self._events():
            if data == b"[DONE]":
                return
            chunk = _sse.loads(data)
            if chunk.get("error"):
                raise _in_band_error(chunk["error"])
            for choice in chunk.get("choices") or ():
                yield from _choice_pieces(choice)
                if choice.get("finish_reason"):
                    self._finish = FINISH_REASONS.get(choice["finish_reason"], "stop")
            usage = chunk.get("usage")
            if usage:
                yield Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0)


def _choice_pieces(choice: dict[str, Any]) -> Iterator[Piece]:
    delta = choice.get("delta") or {}
    text = delta.get("content")
    if text:
        yield TextDelta(text)
    refusal = delta.get("refusal")
    if refusal:
        yield TextDelta(refusal)
    for call in delta.get("tool_calls") or ():
        function = call.get("function") or {}
        yield ToolCallDelta(
            index=call.get("index", 0),
            id=call.get("id"),
            name=function.get("name"),
            arguments=function.get("arguments") or "",
        )


def _in_band_error(error: Any) -> ProviderError:
    """An `error` object inside a stream (the SDK would raise a status-less APIError)."""
    if not isinstance(error, dict):
        return ProviderError("provider_error", f"openai stream error: {error}", retryable=True)
    kind = str(error.get("code") or error.get("type") or "")
    api_type = IN_BAND_TYPES.get(kind, "provider_error")
    message = error.get("message") or "an error occurred during streaming"
    return ProviderError(api_type, f"openai stream error: {message}",
                         retryable=api_type != "invalid_request")


class OpenAIProvider:
    """The `openai` provider (Chat Completions)."""

    name = "openai"

    def __init__(self, settings: Settings) -> None:
        self.default_model = default_model("openai")
        self._settings = settings

    def open(self, request: dict[str, Any]) -> OpenAIStream:
        """Send the request; the returned stream is positioned before the first event."""
        params = request_params(request, self.default_model, bool(self._settings.openai_base_url))
        create = _client(self._settings).chat.completions.with_streaming_response.create
        try:
            response = create(**params).__enter__()
        except openai.OpenAIError as exc:
            raise sdk_error(exc) from exc
        except (httpx2.HTTPError, OSError) as exc:
            raise _sse.transport_error("openai", exc) from exc
        return OpenAIStream(response.http_response)

    def models(self) -> list[str]:
        """Model ids from `GET /models`; the default model alone if that fails."""
        try:
            raw = _client(self._settings).models.with_raw_response.list(timeout=MODELS_TIMEOUT_S)
            listed = _sse.loads(raw.http_response.read()).get("data") or []
            ids = [m["id"] for m in listed if isinstance(m, dict) and m.get("id")]
        except (openai.OpenAIError, ProviderError, httpx2.HTTPError, OSError):
            return [self.default_model]
        return ids or [self.default_model]
