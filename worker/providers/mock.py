"""The deterministic `mock` provider: no key, no network, same options → same stream.

It paces itself with gevent sleeps against a fixed schedule (not a sleep per
token relative to "now"), so hundreds of mocks in one process keep their
rate, and at `tokens_per_second: 0` it still yields to other greenlets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import gevent
import orjson

from spool.catalog import KNOWN_MODELS
from spool.settings import Settings
from worker.providers.base import (
    Finish,
    Piece,
    ProviderError,
    TextDelta,
    ToolCallDelta,
    Usage,
)

TOKEN_CHARS = 4  # code points per "token" chunk
YIELD_EVERY = 16  # unpaced chunks between cooperative yields
FAILURES = {
    "rate_limit": ("rate_limited", "mock provider: rate limit exceeded", True),
    "server_error": ("provider_error", "mock provider: internal server error", True),
    "timeout": ("timeout", "mock provider: request timed out", True),
    "content_filter": ("content_filter", "mock provider: output blocked by content filter", False),
}
_FILLER = (
    "Spool keeps every token in an ordered log, so a reader that drops can come back "
    "and continue exactly where it was. "
)


def derive_text(request: dict[str, Any]) -> str:
    """The default answer: a function of the prompt only, so it is reproducible."""
    prompt = ""
    for message in reversed(request.get("messages") or []):
        if message.get("role") == "user":
            prompt = (message.get("content") or "").strip()
            break
    quoted = prompt[:120] + ("…" if len(prompt) > 120 else "")
    return f"This is the mock provider answering “{quoted}”. " + _FILLER * 2


def split_chunks(text: str, mode: str) -> list[str]:
    """`token`: ~4 code points per piece; `char`: one code point per piece."""
    size = 1 if mode == "char" else TOKEN_CHARS
    return [text[i : i + size] for i in range(0, len(text), size)]


def _prompt_tokens(request: dict[str, Any]) -> int:
    chars = sum(len(m.get("content") or "") for m in request.get("messages") or [])
    chars += len(request.get("system") or "")
    return max(1, chars // TOKEN_CHARS)


class MockStream:
    """One mock generation; iterate for pieces."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.options: dict[str, Any] = request.get("mock") or {}
        self.closed = False

    def close(self) -> None:
        """Stop early (nothing upstream to disconnect)."""
        self.closed = True

    def _fail(self) -> ProviderError:
        kind = self.options.get("fail_with") or "server_error"
        error_type, message, retryable = FAILURES[kind]
        return ProviderError(error_type, message, retryable=retryable)

    def __iter__(self) -> Iterator[Piece]:
        opts = self.options
        text = opts.get("text")
        chunks = split_chunks(text if text is not None else derive_text(self.request),
                              opts.get("chunk") or "token")
        max_tokens = int(self.request.get("max_tokens") or len(chunks))
        finish = "length" if len(chunks) > max_tokens else "stop"
        chunks = chunks[:max_tokens]
        fail_after = opts.get("fail_after_tokens")
        tps = float(opts.get("tokens_per_second", 40))
        interval = 1.0 / tps if tps > 0 else 0.0
        start = time.monotonic() + int(opts.get("ttft_ms", 300)) / 1000.0
        gevent.sleep(max(0.0, start - time.monotonic()))
        for sent, chunk in enumerate(chunks):
            if self.closed:
                return
            if fail_after is not None and sent >= fail_after:
                raise self._fail()
            if interval:
                gevent.sleep(max(0.0, start + sent * interval - time.monotonic()))
            elif sent % YIELD_EVERY == YIELD_EVERY - 1:
                gevent.sleep(0)
            yield TextDelta(chunk)
        if fail_after is not None and fail_after == len(chunks):
            raise self._fail()
        calls = opts.get("tool_calls") or []
        for index, call in enumerate(calls):
            arguments = orjson.dumps(call.get("arguments") or {}).decode()
            middle = len(arguments) // 2
            # Two fragments, as real providers send arguments in pieces.
            yield ToolCallDelta(index, id=f"call_mock_{index}", name=call["name"],
                                arguments=arguments[:middle])
            yield ToolCallDelta(index, arguments=arguments[middle:])
        yield Usage(_prompt_tokens(self.request), len(chunks))
        yield Finish("tool_calls" if calls else finish)


class MockProvider:
    """Factory of MockStreams."""

    name = "mock"
    default_model = KNOWN_MODELS["mock"][0]

    def open(self, request: dict[str, Any]) -> MockStream:
        """Start a mock stream (never fails before streaming)."""
        return MockStream(request)

    def models(self) -> list[str]:
        """The mock's single model."""
        return list(KNOWN_MODELS["mock"])


def build(settings: Settings, name: str = "mock") -> MockProvider:
    """The adapter for `mock` (it has nothing to configure)."""
    return MockProvider()
