"""Starting generations: shared by /v1/generations, /v1/chat, the facade and batches."""

from __future__ import annotations

import time
from typing import Any

import gevent.queue
import redis

from spool.catalog import configured_providers, default_model
from spool.ids import is_generation_id, new_generation_id
from spool.queue import enqueue_generation
from spool.schemas import GenerationRequest
from webapp.errors import ApiError
from webapp.limits import release_active, reserve_active
from webapp.relay.hub import Live
from webapp.services import Services

IDEMPOTENCY_TTL_S = 86400


def resolve_provider(svc: Services, request: GenerationRequest) -> tuple[str, str]:
    """(provider, model) for a request, or 400 when the provider is not configured."""
    provider = request.provider or svc.settings.default_provider
    if provider not in configured_providers(svc.settings):
        raise ApiError(400, f"provider {provider!r} is not configured on this server "
                       f"(configured: {', '.join(configured_providers(svc.settings))})",
                       param="provider")
    return provider, request.model or default_model(svc.settings, provider)


def _claim_idempotency(svc: Services, tenant: str, key: str, gen_id: str) -> str | None:
    """Claim `key` for `gen_id`; returns the earlier generation's id if one holds it."""
    idem_key = svc.keys.idempotency(tenant, key)
    if svc.redis.set(idem_key, gen_id, nx=True, ex=IDEMPOTENCY_TTL_S):
        return None
    earlier = svc.redis.get(idem_key)
    if (isinstance(earlier, str) and is_generation_id(earlier)
            and (svc.generations.load(earlier) or svc.generations.tombstone_tenant(earlier))):
        return earlier
    # The earlier attempt never got as far as a record: this one takes the key over.
    svc.redis.set(idem_key, gen_id, ex=IDEMPOTENCY_TTL_S)
    return None


def start_generation(
    svc: Services,
    tenant: str,
    request: GenerationRequest,
    *,
    batch_id: str | None = None,
) -> tuple[str, bool]:
    """Create and enqueue a generation; returns (id, whether it already existed).

    Outside batches (whose rows queue behind interactive work by design) a
    new generation takes one of the tenant's SPOOL_MAX_ACTIVE places, or 429.
    """
    provider, model = resolve_provider(svc, request)
    gen_id = new_generation_id()
    if request.idempotency_key:
        earlier = _claim_idempotency(svc, tenant, request.idempotency_key, gen_id)
        if earlier is not None:
            return earlier, True
    if "abandon_after_s" in request.model_fields_set:
        abandon = request.abandon_after_s
    else:
        abandon = svc.settings.abandon_after_s
    if batch_id is None:
        reserve_active(svc, tenant, gen_id)
    try:
        svc.generations.create(
            gen_id, tenant, request, provider=provider, model=model,
            abandon_after_s=abandon, batch_id=batch_id,
        )
    except BaseException:
        release_active(svc, tenant, gen_id)
        raise
    try:
        enqueue_generation(
            svc.rq_redis, svc.keys, gen_id, request.priority, svc.settings.job_timeout_s
        )
    except redis.RedisError:
        svc.log.append(gen_id, "error", {"type": "unavailable",
                                         "message": "could not enqueue", "retryable": True},
                       fields={"status": "failed", "finish_reason": "error"})
        raise
    return gen_id, False


def find_generation(svc: Services, gen_id: str, tenant: str | None) -> dict[str, str]:
    """The record of `gen_id` if `tenant` owns it (None: any owner); else 404 or 410."""
    if not is_generation_id(gen_id):
        raise ApiError(404, "no such generation")
    record = svc.generations.load(gen_id)
    if record is not None:
        if tenant is not None and record.get("tenant") != tenant:
            raise ApiError(404, "no such generation")
        return record
    owner = svc.generations.tombstone_tenant(gen_id)
    if owner is not None and (tenant is None or owner == tenant):
        raise ApiError(410, "this generation is past its retention period")
    raise ApiError(404, "no such generation")


def wait_for_end(svc: Services, gen_id: str, timeout_s: float) -> dict[str, str] | None:
    """Block (cooperatively) until the generation ends; its record, or None on timeout."""
    deadline = time.monotonic() + timeout_s
    sub = svc.hub.subscribe(svc.keys.channel(gen_id))
    try:
        while True:
            record = svc.generations.load(gen_id)
            if record is None or "ended" in record:
                return record
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                item: Any = sub.queue.get(timeout=min(remaining, 1.0))
            except gevent.queue.Empty:
                continue
            if isinstance(item, Live) and not item.terminal:
                continue
    finally:
        svc.hub.unsubscribe(sub)
