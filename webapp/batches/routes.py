"""The batch API: submit, read, results (streamed NDJSON), progress (SSE), cancel.

Rows become ordinary `priority: "batch"` generations at submission, but
wait in the batch's pending list; the workers' feeder hands them to the RQ
batch queue a few at a time (see `worker.batchfeed`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import gevent.queue
import orjson
import redis
from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from spool import logs
from spool.batches import BATCH_TERMINAL_EVENTS, BatchStore, Row, cancel_batch, view
from spool.ids import is_batch_id, new_batch_id, new_generation_id
from spool.log import READ_PAGE
from webapp import sse
from webapp.auth import authenticate
from webapp.batches.upload import BatchUpload, read_upload
from webapp.errors import ApiError
from webapp.launch import IDEMPOTENCY_TTL_S, resolve_provider
from webapp.relay.hub import HubUnavailable, Live
from webapp.relay.stream import SSE_HEADERS, parse_resume
from webapp.services import Services, services

log = logging.getLogger("spool.batches")

bp = Blueprint("batches", __name__)

CREATE_CHUNK = 100  # rows written per round trip (the wait on it lets streams run)
RESULTS_PAGE = 200  # rows read per round trip while streaming results


def _store(svc: Services) -> BatchStore:
    return BatchStore(svc.redis, svc.keys, svc.log.retention)


def find_batch(svc: Services, batch_id: str, tenant: str) -> dict[str, str]:
    """The record of a batch `tenant` owns, else 404 (existence is not revealed)."""
    record = _store(svc).load(batch_id) if is_batch_id(batch_id) else None
    if record is None or record.get("tenant") != tenant:
        raise ApiError(404, "no such batch")
    return record


def _claim(svc: Services, tenant: str, key: str, batch_id: str) -> str | None:
    """Claim an idempotency key; the earlier batch's id if one holds it."""
    idem = svc.keys.idempotency(tenant, "batch:" + key)  # apart from generations' keys
    if svc.redis.set(idem, batch_id, nx=True, ex=IDEMPOTENCY_TTL_S):
        return None
    earlier = svc.redis.get(idem)
    if isinstance(earlier, str) and is_batch_id(earlier) and _store(svc).load(earlier):
        return earlier
    svc.redis.set(idem, batch_id, ex=IDEMPOTENCY_TTL_S)  # the earlier attempt never finished
    return None


def _create_rows(svc: Services, tenant: str, batch_id: str, upload: BatchUpload) -> None:
    store = _store(svc)
    resolved = []
    for index, (custom_id, row) in enumerate(upload.rows):
        try:
            resolved.append((custom_id, row, *resolve_provider(svc, row)))
        except ApiError as exc:
            raise ApiError(400, f"row {index}: {exc.message}",
                           param=f"requests.{index}.{exc.param}") from None
    for start in range(0, len(resolved), CREATE_CHUNK):
        pipe = svc.redis.pipeline(transaction=False)
        rows = []
        for custom_id, row, provider, model in resolved[start:start + CREATE_CHUNK]:
            gen_id = new_generation_id()
            # No reader ever attaches to a batch row, so the server-wide
            # abandon default must not apply; only an explicit row value does.
            svc.generations.create(gen_id, tenant, row, provider=provider, model=model,
                                   abandon_after_s=row.abandon_after_s, batch_id=batch_id,
                                   pipe=pipe)
            rows.append(Row(gen_id, custom_id))
        store.queue_rows(pipe, batch_id, rows)
        pipe.execute()
    store.open(batch_id, tenant, len(resolved), upload.metadata)


@bp.post("/v1/batches")
def create_batch() -> ResponseReturnValue:
    """Accept a batch (JSON or NDJSON); 202 with its id, status and total."""
    svc = services()
    tenant = authenticate(svc.settings)
    upload = read_upload(request, svc.settings.max_batch_rows, svc.settings.max_tokens_limit,
                         svc.settings.provider_names)
    batch_id = new_batch_id()
    if upload.idempotency_key:
        earlier = _claim(svc, tenant, upload.idempotency_key, batch_id)
        if earlier is not None:
            logs.bind(batch_id=earlier)
            return jsonify(view(earlier, find_batch(svc, earlier, tenant))), 202
    logs.bind(batch_id=batch_id)  # the request's log line names what it created
    _create_rows(svc, tenant, batch_id, upload)
    return jsonify(view(batch_id, find_batch(svc, batch_id, tenant))), 202


@bp.get("/v1/batches/<batch_id>")
def get_batch(batch_id: str) -> ResponseReturnValue:
    """Counts and status."""
    svc = services()
    tenant = authenticate(svc.settings)
    return jsonify(view(batch_id, find_batch(svc, batch_id, tenant)))


@bp.post("/v1/batches/<batch_id>/cancel")
def cancel(batch_id: str) -> ResponseReturnValue:
    """Drop queued rows, cancel running ones; 409 once the batch completed."""
    svc = services()
    tenant = authenticate(svc.settings)
    record = find_batch(svc, batch_id, tenant)
    if record.get("status") == "completed":
        raise ApiError(409, "batch already completed")
    if "ended" not in record:
        cancel_batch(_store(svc), svc.generations, batch_id)
        record = find_batch(svc, batch_id, tenant)
    return jsonify(view(batch_id, record)), 202


def _result_lines(svc: Services, batch_id: str) -> Iterator[bytes]:
    """One NDJSON line per ended row, a page at a time (never the whole batch in memory)."""
    store, k = _store(svc), svc.keys
    start = 0
    while True:
        ids = store.finished_page(batch_id, start, RESULTS_PAGE)
        if not ids:
            return
        custom_ids = store.custom_ids(batch_id, ids)
        pipe = svc.redis.pipeline(transaction=False)
        for gen_id in ids:
            pipe.hmget(k.record(gen_id), ["status", "usage", "error"])
            pipe.get(k.text(gen_id))
            pipe.lrange(k.tool_calls(gen_id), 0, -1)
        replies = pipe.execute()
        for i, gen_id in enumerate(ids):
            (status, usage, error), text, calls = replies[3 * i:3 * i + 3]
            line = {
                "custom_id": custom_ids[i], "generation_id": gen_id,
                "status": status or "expired", "text": text or "",
                "tool_calls": [{"id": c["id"], "name": c["name"], "arguments": c["arguments"]}
                               for c in map(orjson.loads, calls)],
                "usage": orjson.loads(usage) if usage else None,
                "error": orjson.loads(error) if error else None,
            }
            yield orjson.dumps(line) + b"\n"
        start += len(ids)


@bp.get("/v1/batches/<batch_id>/results")
def results(batch_id: str) -> ResponseReturnValue:
    """NDJSON, one line per finished row, streamed."""
    svc = services()
    tenant = authenticate(svc.settings)
    find_batch(svc, batch_id, tenant)
    return Response(_result_lines(svc, batch_id), mimetype="application/x-ndjson")


def _relay(svc: Services, batch_id: str, after: int) -> Iterator[bytes]:
    """Progress events after `after`, backlog then live, to the terminal event.

    The same merge as a generation's stream: register first, read the log,
    then take live entries; a gap or an overflow goes back to the log.
    """
    store = _store(svc)
    yield sse.retry(svc.settings.sse_retry_ms)
    try:
        sub = svc.hub.subscribe(svc.keys.batch_channel(batch_id))
    except HubUnavailable:
        return
    last = after
    try:
        while True:
            if sub.overflowed:
                sub.reset()
            entries = store.read_progress(batch_id, last, READ_PAGE)
            for entry in entries:
                yield sse.entry_frame(str(entry.seq).encode(), entry.event.encode(),
                                      entry.data.encode())
                last = entry.seq
                if entry.event in BATCH_TERMINAL_EVENTS:
                    return
            if len(entries) == READ_PAGE:
                continue
            quiet_since = time.monotonic()
            while not sub.overflowed:
                wait = svc.settings.ping_interval_s - (time.monotonic() - quiet_since)
                try:
                    item = sub.queue.get(timeout=max(wait, 0.0))
                except gevent.queue.Empty:
                    yield sse.PING
                    break
                if not isinstance(item, Live) or item.seq > last + 1:
                    break  # a gap (batch progress is published one entry per message)
                if item.seq <= last:
                    continue
                yield item.frame
                last = item.seq
                quiet_since = time.monotonic()
                if item.terminal:
                    return
    except redis.RedisError as exc:
        log.warning("batch stream %s ended: redis %s", batch_id, type(exc).__name__)
    finally:
        svc.hub.unsubscribe(sub)


@bp.get("/v1/batches/<batch_id>/events")
def events(batch_id: str) -> ResponseReturnValue:
    """SSE `progress` events, resumable by Last-Event-ID, ending with `done`/`cancelled`."""
    svc = services()
    resume = parse_resume()
    tenant = authenticate(svc.settings)
    record = find_batch(svc, batch_id, tenant)
    if resume.offset is not None:
        raise ApiError(400, "offset applies to generation streams only", param="offset")
    ended = int(record.get("ended", 0))
    if ended and resume.after >= ended:
        return Response(status=204)
    if not ended and resume.after > int(record.get("last_seq", 0)):
        raise ApiError(400, "resume point is past the end of the log", param="Last-Event-ID")
    return Response(_relay(svc, batch_id, resume.after), mimetype="text/event-stream",
                    content_type="text/event-stream; charset=utf-8", headers=SSE_HEADERS)
