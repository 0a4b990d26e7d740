"""The `openai` kind: Chat Completions through the `openai` SDK.

Every provider of this kind uses it: OpenAI itself and any OpenAI-compatible
server (vLLM, Ollama, llama.cpp, Gemini, a proxy) at its configured base URL.
The SDK sends the request (auth, base URL, timeouts, status errors) with its
own `post`, the call its README gives for requests outside the typed
methods; the streamed body is read raw and parsed with orjson (see `_sse`);
opening and error mapping are shared with the other kind (`_sdk`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx2
import openai

from spool.provider_config import ProviderConfig
from worker.providers import _sse
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

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
CHAT_PATH = "/chat/completions"
# What `chat.completions.create` sends with: the API key as a bearer token (the
# admin key, which the default options would add too, is for admin endpoints).
CHAT_OPTIONS: openai.RequestOptions = {"security": {"bearer_auth": True}}
IN_BAND_TYPES = {"rate_limit_exceeded": "rate_limited", "requests": "rate_limited",
                 "tokens": "rate_limited", "invalid_request_error": "invalid_request"}


def build(settings: Settings, name: str = "openai") -> OpenAIProvider:
    """The adapter for the configured provider `name` (of kind `openai`)."""
    return OpenAIProvider(settings.providers[name])


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


class OpenAIProvider(SDKProvider):
    """A provider of kind `openai`: OpenAI itself, or any OpenAI-compatible server.

    With a base URL (vLLM, Ollama, llama.cpp, Gemini, a proxy) it sends the
    older `max_tokens`, which every compatible server understands.
    """

    kind = "openai"
    stream_class = OpenAIStream
    sdk_error_class = openai.OpenAIError
    status_error_class = openai.APIStatusError
    http_client_class = openai.DefaultHttpxClient

    def make_client(self, config: ProviderConfig, timeout: httpx2.Timeout,
                    http_client: httpx2.Client) -> openai.OpenAI:
        """An `openai.OpenAI` client over `http_client`, SDK retries off."""
        return openai.OpenAI(api_key=config.api_key or PLACEHOLDER_KEY,
                             base_url=config.base_url, max_retries=0, timeout=timeout,
                             http_client=http_client)

    def send(self, client: openai.OpenAI, body: bytes) -> httpx2.Response:
        """POST `/chat/completions` with the SDK's `post`, the response streamed, unread."""
        # Typed by the SDK as the `stream_cls` it would parse into; with `cast_to`
        # a response class it returns the response itself (`open` checks).
        response: Any = client.post(CHAT_PATH, cast_to=httpx2.Response, content=body,
                                    options=CHAT_OPTIONS, stream=True,
                                    stream_cls=openai.Stream[Any])
        return response

    def params(self, request: dict[str, Any]) -> dict[str, Any]:
        """The Chat Completions body."""
        return request_params(request, self.default_model, self.config.base_url is not None)

    def status_message(self, exc: Any) -> str:
        """The SDK already parsed `error.message` out of the body (dict) when there was one."""
        body = exc.body if isinstance(exc.body, dict) else {}
        return str(body.get("message") or exc.message)
