"""What a configured provider is: its name, wire format, endpoint, models, timeouts, retries.

Built in: `mock` (always there), `openai`, `anthropic` and the `gemini`
preset; `SPOOL_PROVIDERS` names more. `spool.provider_env` reads all of it
from the environment (once, at startup); this module holds the types and
the built-in defaults both the web and the worker use.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Protocol

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
KINDS = ("openai", "anthropic")  # wire formats a named provider may speak
BUILTIN = ("mock", "openai", "anthropic")  # configured by their own variables
PRESETS = ("gemini",)  # names with defaults; SPOOL_PROVIDER_GEMINI_* may override them
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/v1beta/openai/"
DEFAULT_MODELS = {
    "mock": "mock-1",
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-6",
    "gemini": "gemini-2.5-flash",
}
KNOWN_MODELS = {
    "mock": ("mock-1",),
    "openai": ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini"),
    "anthropic": ("claude-sonnet-4-6", "claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"),
    "gemini": ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite"),
}
DEFAULT_RETRY_ATTEMPTS = 3
DEFAULT_RETRY_BASE_S = 0.5
DEFAULT_RETRY_MAX_S = 8.0
DEFAULT_TIMEOUT_S = 60.0
MIN_TIMEOUT_S = 0.1
NEVER_RETRIED_STATUSES = frozenset({400, 401, 403, 404})
JITTER_LOW = 0.5  # each backoff waits between half and all of its nominal delay

class Failure(Protocol):
    """What a retry decision needs to know about a failure (a ProviderError)."""

    type: str
    retryable: bool
    status: int | None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one provider before any output."""

    attempts: int = DEFAULT_RETRY_ATTEMPTS
    base_s: float = DEFAULT_RETRY_BASE_S
    max_s: float = DEFAULT_RETRY_MAX_S

    def should_retry(self, error: Failure, attempt: int) -> bool:
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


@dataclass(frozen=True)
class Tuning:
    """Timeouts and retry policy: the global ones, or a provider's own."""

    first_token_timeout_s: float = DEFAULT_TIMEOUT_S
    idle_timeout_s: float = DEFAULT_TIMEOUT_S
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class ProviderConfig:
    """One configured provider: who to call and how. Never chosen by a request."""

    name: str
    kind: str  # "mock", "openai" or "anthropic": the wire format (and SDK)
    model: str  # used when a request names none
    models: tuple[str, ...]  # what GET /v1/models lists
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    tuning: Tuning = field(default_factory=Tuning)
    list_models: bool = False  # `_MODELS=auto`: ask the server once, at web startup
