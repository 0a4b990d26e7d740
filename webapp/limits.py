"""The web side of the limits: 429 with Retry-After, counted once per request.

Limits are enforced whenever auth is on. In dev mode (one tenant, no keys)
they apply only if the operator set SPOOL_RATE_LIMIT or SPOOL_MAX_ACTIVE
explicitly, so local load tests are not throttled by production defaults.
"""

from __future__ import annotations

from flask import g

from spool import limits
from spool.clock import now_ms
from spool.settings import Settings
from webapp.errors import ApiError
from webapp.services import Services, services


def enforced(settings: Settings) -> bool:
    """Whether limits apply on this server."""
    return settings.auth_enabled or settings.limits_configured


def _too_many(message: str, verdict: limits.Verdict) -> ApiError:
    return ApiError(429, message, headers={"Retry-After": str(verdict.retry_after_s)})


def count_request(settings: Settings, credential: str) -> None:
    """Count this request against `credential`'s per-minute rate, or 429.

    Called from authentication, which may run twice in one request (the
    events route); `g` makes sure a request is counted once.
    """
    if not enforced(settings) or g.get("spool_rate_counted"):
        return
    g.spool_rate_counted = True
    svc = services()
    verdict = limits.hit_rate(svc.redis, svc.keys, credential, settings.rate_limit)
    if not verdict.allowed:
        raise _too_many(f"rate limit of {settings.rate_limit} requests per minute exceeded",
                        verdict)


def reserve_active(svc: Services, tenant: str, gen_id: str) -> None:
    """Hold one of `tenant`'s SPOOL_MAX_ACTIVE places for `gen_id`, or 429."""
    if not enforced(svc.settings):
        return
    verdict = limits.reserve_active(
        svc.redis, svc.keys, tenant, gen_id, svc.settings.max_active,
        svc.log.retention.live_s, now_ms(),
    )
    if not verdict.allowed:
        raise _too_many(
            f"at most {svc.settings.max_active} generations may be queued or running at once",
            verdict,
        )


def release_active(svc: Services, tenant: str, gen_id: str) -> None:
    """Give back a reservation whose generation was never created."""
    if enforced(svc.settings):
        limits.release_active(svc.redis, svc.keys, tenant, gen_id)
