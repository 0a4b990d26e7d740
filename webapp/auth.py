"""Who is calling: API keys (Bearer) and per-generation stream tokens."""

from __future__ import annotations

import hashlib
import hmac

from flask import request

from spool import logs
from spool.settings import Settings
from spool.tokens import sign_stream_token, verify_stream_token
from webapp.errors import ApiError
from webapp.limits import count_request

DEV_TENANT = "dev"
# Signs stream tokens in dev mode (auth off), where tokens are not checked.
DEV_SECRET = "spool-dev-mode-secret-not-for-production"


def bearer_key() -> str | None:
    """The Bearer credential of the current request, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def _fingerprint(key: str) -> bytes:
    # Comparing fixed-length digests hides the length of the configured keys too.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def tenant_for_key(settings: Settings, key: str) -> str | None:
    """Tenant owning `key`, compared in constant time against every key.

    The loop never stops early, so the time taken does not tell which key
    (or how much of one) matched.
    """
    found = None
    offered = _fingerprint(key)
    for known, tenant in settings.api_keys.items():
        if hmac.compare_digest(_fingerprint(known), offered):
            found = tenant
    return found


def authenticate(settings: Settings, *, defer_rate: bool = False) -> str:
    """The calling tenant, or 401; then 429 past the key's rate limit.

    Dev mode (no keys configured) is tenant `dev`. With `defer_rate` the
    request is counted later, by the admission script of the generation it
    creates (`webapp.limits.take_deferred`): one round trip fewer.
    """
    if not settings.auth_enabled:
        logs.bind(tenant=DEV_TENANT)
        count_request(settings, DEV_TENANT, f"tenant:{DEV_TENANT}", defer=defer_rate)
        return DEV_TENANT
    key = bearer_key()
    tenant = tenant_for_key(settings, key) if key else None
    if tenant is None or key is None:
        # The message never echoes what was sent: a near-miss key is still a secret.
        raise ApiError(401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"})
    logs.bind(tenant=tenant)
    count_request(settings, tenant, f"key:{key}", defer=defer_rate)
    return tenant


def stream_secret(settings: Settings) -> str:
    """The key signing stream tokens."""
    return settings.secret_key or DEV_SECRET


def stream_url(settings: Settings, gen_id: str) -> str:
    """The events URL with a token that opens exactly this generation."""
    token = sign_stream_token(stream_secret(settings), gen_id, settings.stream_token_ttl_s)
    return f"/v1/generations/{gen_id}/events?token={token}"


def authorize_stream(settings: Settings, gen_id: str, owner: str) -> None:
    """Allow reading `gen_id`'s events by stream token or by the owner's key.

    A wrong tenant's key answers 404 (existence is not revealed); a bad or
    expired token answers 401.
    """
    if not settings.auth_enabled:
        return
    token = request.args.get("token")
    if token is not None:
        if not verify_stream_token(stream_secret(settings), gen_id, token):
            raise ApiError(401, "invalid or expired stream token", param="token")
        return
    if authenticate(settings) != owner:
        raise ApiError(404, "no such generation")
