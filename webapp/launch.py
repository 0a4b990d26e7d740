"""Starting generations: shared by /v1/generations, /v1/chat, the facade and batches."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gevent.queue
import redis

from spool.admission import IDEMPOTENCY_TTL_S, Refused, Ticket
from spool.catalog import configured_providers, default_model
from spool.generations import Generations
from spool.ids import is_generation_id, new_generation_id
from spool.limits import queue_release
from spool.queue import enqueue_commands, enqueue_generation
from spool.schemas import GenerationRequest
from webapp.errors import ApiError
from webapp.limits import active_error, count_deferred, enforced, rate_error, take_deferred
from webapp.relay.hub import Live
from webapp.relay.presence import Presence
from webapp.services import Services

__all__ = ["IDEMPOTENCY_TTL_S", "find_generation", "launch_generation", "owned_generation",
           "resolve_provider", "wait_for_end"]

def resolve_provider(svc: Services, request: GenerationRequest) -> tuple[str, str]:
    """(provider, model) for a request, or 400 when the provider is not configured."""
    provider = request.provider or svc.settings.default_provider
    if provider not in configured_providers(svc.settings):
        raise ApiError(400, f"provider {provider!r} is not configured on this server "
                       f"(configured: {', '.join(configured_providers(svc.settings))})",
                       param="provider")
    return provider, request.model or default_model(svc.settings, provider)


@dataclass(frozen=True)
class Launched:
    """A started generation: its id, whether an idempotency key matched an
    earlier one, and (for a new one) its creation time and `abandon_after_s`."""

    gen_id: str
    existing: bool
    created_ms: int | None = None
    abandon_after_s: int | None = None


def launch_generation(
    svc: Services,
    tenant: str,
    request: GenerationRequest,
    *,
    batch_id: str | None = None,
    record_extra: dict[str, str] | None = None,
) -> Launched:
    """Create and enqueue a generation.

    `record_extra`: more fields for its record (a facade's own view of the
    request, e.g. what `GET /v1/responses/{id}` echoes), written with it.

    One round trip, shared with concurrent requests: the admission script
    (rate, idempotency, the tenant's active place, record, event 1 and, with
    RQ on Spool's Redis, RQ's enqueue; see `spool.admission`). With RQ
    elsewhere the enqueue is a second round trip, one pipeline there.
    Outside batches (whose rows queue behind interactive work by design) a
    new generation takes one of the tenant's SPOOL_MAX_ACTIVE places, or 429.
    """
    try:
        provider, model = resolve_provider(svc, request)
    except ApiError:
        count_deferred(svc.settings)
        raise
    if "abandon_after_s" in request.model_fields_set:
        abandon = request.abandon_after_s
    else:
        abandon = svc.settings.abandon_after_s
    limited = enforced(svc.settings)
    takes_place = limited and batch_id is None
    record = svc.generations.new_record(tenant, request, provider=provider, model=model,
                                        abandon_after_s=abandon, batch_id=batch_id,
                                        holds_place=takes_place)
    if record_extra:
        record.update(record_extra)
    gen_id = new_generation_id()
    ticket = Ticket(gen_id, tenant, record,
                    rate=take_deferred(svc.settings) if limited else None,
                    idempotency_key=request.idempotency_key,
                    active_limit=svc.settings.max_active if takes_place else 0,
                    enqueue=_enqueue_commands(svc, gen_id, request.priority)
                    if svc.rq_shared else ())
    try:
        admitted = svc.admission.admit(ticket)
    except Refused as refused:
        if refused.kind == "rate":
            raise rate_error(svc.settings, refused.verdict) from None
        raise active_error(svc.settings, refused.verdict) from None
    if admitted.existing:
        return Launched(admitted.gen_id, True)
    if not ticket.enqueue:
        _enqueue(svc, ticket)
    return Launched(ticket.gen_id, False, int(record["created_ms"]), abandon)


def _enqueue_commands(svc: Services, gen_id: str, priority: str) -> tuple[tuple[Any, ...], ...]:
    """RQ's own enqueue of `gen_id`, recorded instead of sent: the admission
    script runs these commands once it admits the generation (one round trip)."""
    return enqueue_commands(svc.rq_redis, svc.keys, gen_id, priority, svc.settings.job_timeout_s)


def _enqueue(svc: Services, ticket: Ticket) -> None:
    """The RQ job, one pipeline; if Redis refuses, the generation ends `unavailable`."""
    gen_id = ticket.gen_id
    try:
        with svc.rq_redis.pipeline() as pipe:
            enqueue_generation(svc.rq_redis, svc.keys, gen_id, ticket.record["priority"],
                               svc.settings.job_timeout_s, pipeline=pipe)
            pipe.execute()
    except redis.RedisError:
        seq = svc.log.append(gen_id, "error", {"type": "unavailable",
                                               "message": "could not enqueue",
                                               "retryable": True},
                             fields={"status": "failed", "finish_reason": "error"})
        if seq > 0:
            queue_release(svc.redis, svc.keys, gen_id, ticket.record)
        raise


def find_generation(svc: Services, gen_id: str, tenant: str | None,
                    fields: Sequence[str] | None = None,
                    generations: Generations | None = None) -> dict[str, str]:
    """The record of `gen_id` if `tenant` owns it (None: any owner); else 404 or 410.

    With `fields`, only those (and the owner) are read; `generations` reads
    on another client (readers pass their own pool's).
    """
    if not is_generation_id(gen_id):
        raise ApiError(404, "no such generation")
    gens = generations or svc.generations
    record = gens.load(gen_id) if fields is None else gens.load_fields(gen_id, fields)
    return owned_generation(svc, gen_id, tenant, record)


def find_view(svc: Services, gen_id: str,
              tenant: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The API view of `gen_id` if `tenant` owns it (else 404 or 410), and its
    `readers` hash: one round trip, and a poller never pays for the prompt."""
    if not is_generation_id(gen_id):
        raise ApiError(404, "no such generation")
    record, view, readers = svc.generations.load_view(gen_id)
    owned_generation(svc, gen_id, tenant, record)
    assert view is not None  # a record exists: owned_generation raised otherwise
    return view, readers


def owned_generation(svc: Services, gen_id: str, tenant: str | None,
                     record: dict[str, str] | None) -> dict[str, str]:
    """`record` (as loaded for `gen_id`) if `tenant` owns it (None: any owner); else 404 or 410."""
    if record is not None:
        if tenant is not None and record.get("tenant") != tenant:
            raise ApiError(404, "no such generation")
        return record
    owner = svc.generations.tombstone_tenant(gen_id)
    if owner is not None and (tenant is None or owner == tenant):
        raise ApiError(410, "this generation is past its retention period")
    raise ApiError(404, "no such generation")


def wait_for_end(svc: Services, gen_id: str, timeout_s: float, *,
                 watch: Presence | None = None,
                 abandon_s: int | None = None) -> dict[str, str] | None:
    """Block (cooperatively) until the generation ends; its record, or None on timeout.

    With `watch`, the waiting client counts as a reader of the generation, as
    a stream's does: an `abandon_after_s` answer is not abandoned under a
    client that is waiting for it (for at most `timeout_s`).
    """
    deadline = time.monotonic() + timeout_s
    sub = svc.hub.subscribe(svc.keys.channel(gen_id))
    if watch is not None:
        watch.attach(gen_id, abandon_s)
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
            if isinstance(item, tuple) and not item[-1].terminal:
                continue
    finally:
        if watch is not None:
            watch.detach(gen_id)
        svc.hub.unsubscribe(sub)
