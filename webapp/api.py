"""The generations API: create, read, cancel, and the blocking /v1/chat."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from spool import logs
from spool.clock import iso
from spool.schemas import RequestError, parse_generation_request
from webapp.auth import authenticate, stream_url
from webapp.body import require_json_object
from webapp.errors import ApiError
from webapp.launch import find_generation, find_view, launch_generation, wait_for_end
from webapp.limits import count_deferred
from webapp.relay.hub import HubUnavailable
from webapp.relay.presence import live_readers
from webapp.relay.stream import presence
from webapp.services import services

bp = Blueprint("api", __name__)


def parse_request_body() -> Any:
    """Decode and validate a generation request body (400/413/415 on failure).

    A refused body still counts against the caller's rate (429 past it).
    """
    svc = services()
    try:
        payload = require_json_object(request)
        try:
            return parse_generation_request(payload,
                                            max_tokens_limit=svc.settings.max_tokens_limit,
                                            providers=svc.settings.provider_names)
        except RequestError as exc:
            raise ApiError(400, exc.message, param=exc.param) from None
    except ApiError:
        count_deferred(svc.settings)
        raise


@bp.post("/v1/generations")
def create_generation() -> ResponseReturnValue:
    """Enqueue a generation; 202 with its id and stream URL."""
    svc = services()
    tenant = authenticate(svc.settings, defer_rate=True)
    body = parse_request_body()
    launched = launch_generation(svc, tenant, body)
    gen_id = launched.gen_id
    logs.bind(generation_id=gen_id)  # the request's log line names what it created
    if launched.created_ms is None:  # an idempotent replay: whatever the earlier one became
        status, created_ms = (find_generation(svc, gen_id, tenant)[name]
                              for name in ("status", "created_ms"))
    else:  # just admitted: nothing to read back
        status, created_ms = "queued", str(launched.created_ms)
    return jsonify(
        id=gen_id,
        object="generation",
        status=status,
        stream_url=stream_url(svc.settings, gen_id),
        created_at=iso(int(created_ms)),
    ), 202


@bp.get("/v1/generations/<gen_id>")
def get_generation(gen_id: str) -> ResponseReturnValue:
    """The generation record: status, text so far, tool calls, usage, metrics."""
    svc = services()
    tenant = authenticate(svc.settings)
    view, readers = find_view(svc, gen_id, tenant)
    view["readers"] = live_readers(readers, time.time() * 1000)
    return jsonify(view)


@bp.post("/v1/generations/<gen_id>/cancel")
def cancel_generation(gen_id: str) -> ResponseReturnValue:
    """Ask the worker to stop; 409 once the generation completed or failed."""
    svc = services()
    tenant = authenticate(svc.settings)
    record = find_generation(svc, gen_id, tenant)
    if record.get("status") in ("completed", "failed"):
        raise ApiError(409, f"generation already {record['status']}")
    status = svc.generations.request_cancel(gen_id, record)
    return jsonify(id=gen_id, status=status), 202


@bp.post("/v1/chat")
def chat() -> ResponseReturnValue:
    """Create a generation and wait for it: 200 with the record, or 504 with the id."""
    svc = services()
    tenant = authenticate(svc.settings, defer_rate=True)
    body = parse_request_body()
    launched = launch_generation(svc, tenant, body)
    gen_id = launched.gen_id
    try:
        # The waiting client counts as a reader, as a stream's does.
        record = wait_for_end(svc, gen_id, svc.settings.chat_timeout_s,
                              watch=presence(svc), abandon_s=launched.abandon_after_s)
    except HubUnavailable:
        record = None
    if record is None or "ended" not in record:
        raise ApiError(
            504,
            "the generation did not finish in time; it keeps running and can still be read",
            type="timeout",
            extra={"id": gen_id},
        )
    return jsonify(svc.generations.view(gen_id, record))
