"""The web side of the limits: 429 with Retry-After, counted once per request.

Limits are enforced whenever auth is on. In dev mode (one tenant, no keys)
they apply only if the operator set SPOOL_RATE_LIMIT or SPOOL_MAX_ACTIVE
explicitly, so local load tests are not throttled by production defaults.

Routes that create a generation defer the rate count to the admission
script (`spool.admission`), which counts it in the same round trip as
everything else; if such a request fails before admission (a bad body, an
unconfigured provider), `count_deferred` counts it then, so every
authenticated request still counts exactly once.
"""

from __future__ import annotations

from flask import g

from spool import limits
from spool.settings import Settings
from webapp.errors import ApiError
from webapp.services import services


def enforced(settings: Settings) -> bool:
    """Whether limits apply on this server."""
    return settings.auth_enabled or settings.limits_configured


def too_many(message: str, verdict: limits.Verdict) -> ApiError:
    """The 429 for a refused verdict."""
    return ApiError(429, message, headers={"Retry-After": str(verdict.retry_after_s)})


def rate_error(settings: Settings, verdict: limits.Verdict) -> ApiError:
    """The 429 for a request over its credential's rate."""
    return too_many(f"rate limit of {settings.rate_limit} requests per minute exceeded", verdict)


def active_error(settings: Settings, verdict: limits.Verdict) -> ApiError:
    """The 429 for a tenant at SPOOL_MAX_ACTIVE."""
    return too_many(
        f"at most {settings.max_active} generations may be queued or running at once", verdict)


def count_request(settings: Settings, tenant: str, credential: str, *,
                  defer: bool = False) -> None:
    """Count this request against `credential`'s per-minute rate, or 429.

    Called from authentication, which may run twice in one request (the
    events route); `g` makes sure a request is counted once. With `defer`,
    the count is left to the admission script (see `take_deferred`).
    """
    if not enforced(settings) or g.get("spool_rate_counted"):
        return
    if defer:
        g.spool_rate_deferred = (tenant, credential)
        return
    g.spool_rate_counted = True
    svc = services()
    verdict = limits.hit_rate(svc.redis, svc.keys, tenant, credential, settings.rate_limit)
    if not verdict.allowed:
        raise rate_error(settings, verdict)


def take_deferred(settings: Settings) -> tuple[str, int] | None:
    """(credential, limit) for the admission script to count, once per request."""
    deferred = g.pop("spool_rate_deferred", None)
    if deferred is None or g.get("spool_rate_counted"):
        return None
    g.spool_rate_counted = True
    return deferred[1], settings.rate_limit


def count_deferred(settings: Settings) -> None:
    """Count a deferred request that failed before admission (429 past the rate)."""
    deferred = g.pop("spool_rate_deferred", None)
    if deferred is not None:
        count_request(settings, *deferred)
