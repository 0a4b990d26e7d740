"""The failure policy around provider streams: retry, fall back, time out.

Before any output reaches the runner, a retryable failure (429, 5xx, 529,
connection errors, an empty stream) is retried on the same provider with
jittered exponential backoff that honours `retry-after`; when retries run
out (or the failure is not retryable: 400/401/403/404, timeouts) the next
provider of `SPOOL_FALLBACK_PROVIDERS` is tried. Once output has been
yielded, nothing is retried: a failure is a ProviderError the runner ends
the generation with.

"Output" means text, a tool call or a finish reason. A Usage piece that
arrives first (Anthropic's `message_start`) is held back until then, so it
does not forfeit a retry.

Tunables come from Settings, validated at startup: each provider's retry
policy (`SPOOL_RETRY_*`, or its own `SPOOL_PROVIDER_<NAME>_RETRY_*`: attempts,
first backoff doubling per attempt, longest single wait — a `retry-after`
longer than that skips straight to the fallback) and its first-token and
idle timeouts.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import gevent

from spool.catalog import configured_providers
from spool.provider_config import RetryPolicy
from worker.providers import Registry, registry
from worker.providers.base import Finish, Piece, ProviderError, Stream, Usage
from worker.providers.idlewatch import IdleWatch

if TYPE_CHECKING:
    from spool.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["ResilientStream", "RetryPolicy", "open_stream", "provider_chain"]

DRAIN_TIMEOUT_S = 1.0  # how long the rest of a finished body may take before it is dropped


class _PreOutputFailure(Exception):
    """A provider failed before yielding output: the next provider may take over."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(error.message)
        self.error = error


def provider_chain(first: str, fallbacks: tuple[str, ...],
                   configured: list[str] | None = None) -> list[str]:
    """`first`, then each fallback once, in order, skipping any not `configured`.

    A fallback without a key or base URL could only fail, after a wasted round trip.
    """
    usable = [name for name in fallbacks if configured is None or name in configured]
    return list(dict.fromkeys((first, *usable)))


def open_stream(
    request: dict[str, Any], settings: Settings, provider_name: str,
    notify: Callable[[str], None], adapters: Registry | None = None,
) -> ResilientStream:
    """A Stream over `provider_name` (and its fallbacks) with the retry and timeout policy.

    Nothing is sent until the stream is iterated. `notify` receives one
    human-readable line per retry or fallback (the runner emits `notice`).
    `adapters` defaults to the process's registry for `settings`.
    """
    return ResilientStream(request, adapters or registry(settings), provider_name, notify)


class ResilientStream:
    """See the module docstring. `provider` and `model` name whoever is serving now."""

    def __init__(self, request: dict[str, Any], adapters: Registry, provider_name: str,
                 notify: Callable[[str], None]) -> None:
        self._request = request
        self._adapters = adapters
        self._notify = notify
        settings = adapters.settings
        self._chain = provider_chain(provider_name, settings.fallback_providers,
                                     configured_providers(settings))
        self._current: Stream | None = None
        self._gen: Generator[Piece, None, None] | None = None
        self._closed = False
        self.emitted = False
        self.provider = provider_name
        self.model: str | None = request.get("model")

    def __iter__(self) -> Generator[Piece, None, None]:
        if self._gen is None:
            self._gen = self._generate()
        return self._gen

    def close(self) -> None:
        """Close the upstream connection now; idempotent."""
        self._closed = True
        current, self._current = self._current, None
        if current is not None:
            current.close()
        gen = self._gen
        if gen is not None and inspect.getgeneratorstate(gen) == inspect.GEN_SUSPENDED:
            gen.close()

    def _generate(self) -> Generator[Piece, None, None]:
        failure: ProviderError | None = None
        for position, name in enumerate(self._chain):
            if self._closed:
                return
            if failure is not None:
                message = (f"{self._chain[position - 1]} failed before any output "
                           f"({failure.message}); falling back to {name}")
                log.warning("%s", message)
                self._notify(message)
            request = self._request if position == 0 else {**self._request, "model": None}
            try:
                yield from self._attempts(name, request)
                return
            except _PreOutputFailure as exc:
                failure = exc.error
        if failure is not None and not self._closed:
            raise failure

    def _attempts(self, name: str, request: dict[str, Any]) -> Iterator[Piece]:
        policy = self._policy(name)
        attempt = 0
        while not self._closed:
            attempt += 1
            try:
                yield from self._one_attempt(name, request)
                return
            except ProviderError as error:
                if self.emitted or self._closed:
                    raise
                delay = policy.delay(attempt, error.retry_after_s)
                if delay is None or not policy.should_retry(error, attempt):
                    raise _PreOutputFailure(error) from error
                message = (f"{error.message}; retrying in {delay:.1f} s "
                           f"(attempt {attempt + 1} of {policy.attempts})")
                log.info("%s", message)
                self._notify(message)
                gevent.sleep(delay)

    def _policy(self, name: str) -> RetryPolicy:
        config = self._adapters.settings.providers.get(name)
        return config.tuning.retry if config else self._adapters.settings.retry

    def _one_attempt(self, name: str, request: dict[str, Any]) -> Iterator[Piece]:
        try:
            # Adapters are built with the registry (at worker start), never on the clock.
            provider = self._adapters.get(name)
            tuning = self._adapters.config(name).tuning
            late = f"{name} sent no output within {tuning.first_token_timeout_s:g} s"
            self.provider, self.model = name, request.get("model") or provider.default_model
            deadline = time.monotonic() + tuning.first_token_timeout_s
            stream = _timed(lambda: provider.open(request), deadline, late)
            self._current = stream
            if self._closed:  # cancelled while the request was being sent
                stream.close()
                return
            yield from self._pieces(name, stream, deadline, late, tuning.idle_timeout_s)
        except ProviderError:
            raise
        except Exception as exc:  # an adapter bug must still end the generation cleanly
            log.exception("provider %s failed unexpectedly", name)
            raise ProviderError("provider_error", f"{name}: {type(exc).__name__}: {exc}") from exc
        finally:
            current, self._current = self._current, None
            if current is not None:
                current.close()

    def _pieces(self, name: str, stream: Stream, deadline: float, late: str,
                idle: float) -> Iterator[Piece]:
        pieces = iter(stream)
        held: Usage | None = None
        while not self.emitted:
            piece = _timed(lambda: next(pieces, None), deadline, late)
            if piece is None:
                raise ProviderError("provider_error", f"{name} ended the stream before any "
                                    "output", retryable=True)
            if isinstance(piece, Usage):
                held = piece
                continue
            self.emitted = True
            if held is not None:
                yield held
            yield piece
            if isinstance(piece, Finish):
                _finish_reading(pieces)
                return
        watch = IdleWatch(idle)
        try:
            while True:
                try:
                    piece = watch.read(pieces)
                except gevent.Timeout as exc:
                    if exc is not watch.error:
                        raise
                    raise ProviderError("timeout", f"{name} sent nothing for {idle:g} s",
                                        retryable=True) from None
                if piece is None:
                    return
                yield piece
                if isinstance(piece, Finish):
                    _finish_reading(pieces)
                    return
        finally:
            watch.close()


def _finish_reading(pieces: Iterator[Piece]) -> None:
    """Let the adapter read past its end marker (to keep the connection), briefly.

    The answer is complete once Finish is seen, so nothing after it may turn
    it into an error or hold up `done` for long.
    """
    with gevent.Timeout(DRAIN_TIMEOUT_S, False):
        try:
            for _piece in pieces:
                pass
        except ProviderError:
            pass


def _timed(call: Callable[[], Any], deadline: float, message: str) -> Any:
    """Run `call`, raising a retryable timeout ProviderError once `deadline` passes."""
    seconds = max(0.0, deadline - time.monotonic())
    timer = gevent.Timeout(seconds)
    timer.start()
    try:
        return call()
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        raise ProviderError("timeout", message, retryable=True) from None
    finally:
        timer.cancel()
