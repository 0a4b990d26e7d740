"""What the worker does when Redis will not take a write: back off, in order, for a while.

Redis refuses writes for reasons that pass: maxmemory reached under
`noeviction` (OOM), a replica during a failover (READONLY), a failed
snapshot (MISCONF), a restart (LOADING, connection refused), a busy script
(BUSY). None of them says anything about the generation, so none may end
it as "refused" — only the append script's own answer (-1, -2) does that.

The policy: retry with exponential backoff; once writes have been failing
for `bound_s`, the writer gives up on the generations whose events are
stuck: it drops their unwritten events and ends each with one
`error {type: unavailable, retryable: true}`, which it keeps retrying until
Redis takes it (the script refuses it if someone else ended the log first).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from spool.log import APPENDED_TOO_EARLY
from spool.settings import Settings

log = logging.getLogger("spool.writer")

WRITE_RETRY_BOUND_S = Settings.write_retry_s  # SPOOL_WRITE_RETRY_S's default: then they end
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0
UNAVAILABLE_MESSAGE = ("the event store refused writes for too long; "
                       "the answer was cut short, retry the request")


def needs_resend(result: Any) -> bool:
    """A per-append answer that means "not applied, try again later"."""
    return isinstance(result, redis.RedisError) or result == APPENDED_TOO_EARLY


def unavailable_event() -> tuple[dict[str, Any], dict[str, Any]]:
    """The `error` event's data and record fields for a generation the writer gave up on."""
    data = {"type": "unavailable", "message": UNAVAILABLE_MESSAGE, "retryable": True}
    fields = {"status": "failed", "finish_reason": "error",
              "error": {"type": "unavailable", "message": UNAVAILABLE_MESSAGE},
              "finished_ms": int(time.time() * 1000)}
    return data, fields


@dataclass
class WriteRetry:
    """Backoff and the give-up clock, shared by every flush of one writer.

    The clock starts at the first failed attempt and stops at the first
    attempt that writes everything it carried, so events queued behind a
    stuck flush do not get a fresh `bound_s` of their own.
    """

    bound_s: float = WRITE_RETRY_BOUND_S
    failing_since: float | None = None
    _delay_s: float = BACKOFF_FIRST_S
    failures: int = 0
    gave_up: int = 0  # generations ended `unavailable`
    _last_logged: float = field(default=0.0)

    def succeeded(self) -> None:
        """Everything of an attempt was answered: Redis takes writes again."""
        if self.failing_since is not None:
            log.warning("event writes accepted again after %.1f s",
                        time.monotonic() - self.failing_since)
        self.failing_since = None
        self._delay_s = BACKOFF_FIRST_S

    def failed(self, reason: str) -> None:
        """An attempt left something unwritten (logged at most once a second)."""
        now = time.monotonic()
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = now
        if now - self._last_logged >= 1.0:
            self._last_logged = now
            log.warning("event write refused (%s); retrying for up to %.0f s", reason,
                        self.bound_s)

    def expired(self) -> bool:
        """True once writes have been failing for longer than the bound."""
        return (self.failing_since is not None
                and time.monotonic() - self.failing_since >= self.bound_s)

    def next_delay(self) -> float:
        """The next wait: doubling from BACKOFF_FIRST_S up to BACKOFF_MAX_S."""
        delay = self._delay_s
        self._delay_s = min(self._delay_s * 2, BACKOFF_MAX_S)
        return delay


def reason_of(results: list[Any]) -> str:
    """A short name for the first failure among `results` (for the log)."""
    for result in results:
        if isinstance(result, redis.RedisError):
            return f"{type(result).__name__}: {str(result)[:80]}"
        if result == APPENDED_TOO_EARLY:
            return "an earlier append has not landed"
    return "unknown"
