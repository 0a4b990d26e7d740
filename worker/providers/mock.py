"""The deterministic `mock` provider: no key, no network, same options → same stream.

It paces itself with one repeating timer per stream, on a fixed schedule (not
a sleep per token relative to "now"), so hundreds of mocks in one process
keep their rate at one cheap wake-up per token (a `gevent.sleep` per token
built and tore down a timer each time); at `tokens_per_second: 0` it still
yields to other greenlets.
"""

from __future__ import annotations

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


class _Pacer:
    """Wakes the greenlet that made it at `first_s`, then every `interval_s`.

    Ticks that pass while the stream is not waiting (its consumer was busy)
    are owed, so the stream catches up with its schedule as the old sleeps did.
    """

    def __init__(self, first_s: float, interval_s: float) -> None:
        self._hub = gevent.get_hub()
        self._greenlet = gevent.getcurrent()
        self._ready = 0
        self._waiting = False
        self._timer: Any = self._hub.loop.timer(max(first_s, 0.0), interval_s)
        self._timer.start(self._tick)

    def _tick(self) -> None:
        self._ready += 1
        if self._waiting:
            self._waiting = False
            self._greenlet.switch()

    def wait(self) -> None:
        """Block until the next tick (at once if one is owed)."""
        if not self._ready:
            self._waiting = True
            try:
                self._hub.switch()
            finally:
                self._waiting = False  # also when woken by an exception (cancel, timeout)
        self._ready -= 1

    def close(self) -> None:
        """Stop the timer (idempotent)."""
        self._timer.stop()
        self._timer.close()


class MockStream:
    """One mock generation; iterate for pieces."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.options: dict[str, Any] = request.get("mock") or {}
        self.closed = False
        self._pacer: _Pacer | None = None

    def close(self) -> None:
        """Stop early (nothing upstream to disconnect)."""
        self.closed = True
        if self._pacer is not None:
            self._pacer.close()

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
        ttft_s = int(opts.get("ttft_ms", 300)) / 1000.0
        if interval and chunks:
            self._pacer = _Pacer(ttft_s, interval)
            try:
                yield from self._paced(chunks, self._pacer, fail_after)
            finally:
                self._pacer.close()
        else:
            gevent.sleep(ttft_s)
            for sent, chunk in enumerate(chunks):
                if self.closed:
                    return
                if fail_after is not None and sent >= fail_after:
                    raise self._fail()
                if sent % YIELD_EVERY == YIELD_EVERY - 1:
                    gevent.sleep(0)
                yield TextDelta(chunk)
        if self.closed:
            return
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

    def _paced(self, chunks: list[str], pacer: _Pacer,
               fail_after: int | None) -> Iterator[Piece]:
        """The chunks on the pacer's schedule (a failure comes when its token would)."""
        for sent, chunk in enumerate(chunks):
            if sent == 0:
                pacer.wait()  # the first token's time: a failure at 0 waits for it too
            if self.closed:
                return
            if fail_after is not None and sent >= fail_after:
                raise self._fail()
            if sent:
                pacer.wait()
            if self.closed:
                return
            yield TextDelta(chunk)


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
