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

Tunables (environment, read per stream so tests can shrink them):
`SPOOL_RETRY_ATTEMPTS` (attempts per provider, default 3),
`SPOOL_RETRY_BASE_S` (first backoff, default 0.5, doubling per attempt),
`SPOOL_RETRY_MAX_S` (longest single wait, default 8; a `retry-after` longer
than this skips straight to the fallback).
"""

from __future__ import annotations

import inspect
import logging
import os
import random
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent

from spool.catalog import configured_providers
from worker.providers import get_provider
from worker.providers.base import Finish, Piece, ProviderError, Stream, Usage

if TYPE_CHECKING:
    from spool.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_ATTEMPTS = 3
DEFAULT_BASE_S = 0.5
DEFAULT_MAX_S = 8.0
JITTER_LOW = 0.5  # each backoff waits between half and all of its nominal delay
NEVER_RETRIED_STATUSES = frozenset({400, 401, 403, 404})
DRAIN_TIMEOUT_S = 1.0  # how long the rest of a finished body may take before it is dropped


def _env_number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum:
        log.warning("ignoring %s=%r (want a number >= %s); using %s", name, raw, minimum, default)
        return default
    return value


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one provider before any output."""

    attempts: int = DEFAULT_ATTEMPTS
    base_s: float = DEFAULT_BASE_S
    max_s: float = DEFAULT_MAX_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetryPolicy:
        """Read `SPOOL_RETRY_ATTEMPTS`, `SPOOL_RETRY_BASE_S`, `SPOOL_RETRY_MAX_S`."""
        env = os.environ if env is None else env
        return cls(
            attempts=int(_env_number(env, "SPOOL_RETRY_ATTEMPTS", DEFAULT_ATTEMPTS, 1)),
            base_s=_env_number(env, "SPOOL_RETRY_BASE_S", DEFAULT_BASE_S, 0),
            max_s=_env_number(env, "SPOOL_RETRY_MAX_S", DEFAULT_MAX_S, 0),
        )

    def should_retry(self, error: ProviderError, attempt: int) -> bool:
        """Whether a pre-output `error` on attempt number `attempt` is worth another try."""
        if attempt >= self.attempts or not error.retryable or error.type == "timeout":
            return False
        return error.status not in NEVER_RETRIED_STATUSES

    def delay(self, attempt: int, retry_after_s: float | None) -> float | None:
        """Seconds to wait before attempt `attempt + 1`; None if the provider asks too much."""
        if retry_after_s is not None and retry_after_s > self.max_s:
            return None
        nominal = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        wait = nominal * random.uniform(JITTER_LOW, 1.0)
        return max(wait, retry_after_s or 0.0)


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
    notify: Callable[[str], None],
) -> ResilientStream:
    """A Stream over `provider_name` (and its fallbacks) with the retry and timeout policy.

    Nothing is sent until the stream is iterated. `notify` receives one
    human-readable line per retry or fallback (the runner emits `notice`).
    """
    return ResilientStream(request, settings, provider_name, notify, RetryPolicy.from_env())


class ResilientStream:
    """See the module docstring. `provider` and `model` name whoever is serving now."""

    def __init__(self, request: dict[str, Any], settings: Settings, provider_name: str,
                 notify: Callable[[str], None], policy: RetryPolicy) -> None:
        self._request = request
        self._settings = settings
        self._notify = notify
        self._policy = policy
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
        attempt = 0
        while not self._closed:
            attempt += 1
            try:
                yield from self._one_attempt(name, request)
                return
            except ProviderError as error:
                if self.emitted or self._closed:
                    raise
                delay = self._policy.delay(attempt, error.retry_after_s)
                if delay is None or not self._policy.should_retry(error, attempt):
                    raise _PreOutputFailure(error) from error
                message = (f"{error.message}; retrying in {delay:.1f} s "
                           f"(attempt {attempt + 1} of {self._policy.attempts})")
                log.info("%s", message)
                self._notify(message)
                gevent.sleep(delay)

    def _one_attempt(self, name: str, request: dict[str, Any]) -> Iterator[Piece]:
        late = f"{name} sent no output within {self._settings.first_token_timeout_s:g} s"
        try:
            # Built before the clock starts: the first build imports the SDK (about a second).
            provider = get_provider(name, self._settings)
            self.provider, self.model = name, request.get("model") or provider.default_model
            deadline = time.monotonic() + self._settings.first_token_timeout_s
            stream = _timed(lambda: provider.open(request), deadline, late)
            self._current = stream
            if self._closed:  # cancelled while the request was being sent
                stream.close()
                return
            yield from self._pieces(name, stream, deadline, late)
        except ProviderError:
            raise
        except Exception as exc:  # an adapter bug must still end the generation cleanly
            log.exception("provider %s failed unexpectedly", name)
            raise ProviderError("provider_error", f"{name}: {type(exc).__name__}: {exc}") from exc
        finally:
            current, self._current = self._current, None
            if current is not None:
                current.close()

    def _pieces(self, name: str, stream: Stream, deadline: float, late: str) -> Iterator[Piece]:
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
        idle = self._settings.idle_timeout_s
        timer = gevent.Timeout(idle)
        while True:
            timer.start()
            try:
                piece = next(pieces, None)
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
                raise ProviderError("timeout", f"{name} sent nothing for {idle:g} s",
                                    retryable=True) from None
            finally:
                timer.cancel()
            if piece is None:
                return
            yield piece
            if isinstance(piece, Finish):
                _finish_reading(pieces)
                return


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
