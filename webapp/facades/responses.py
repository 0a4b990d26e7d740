"""OpenAI's Responses API, background mode included, for every provider.

- `POST /v1/responses` starts a generation (a response is a generation;
  `resp_<x>` is `gen_<x>`) and answers as asked: the queued response at once
  (`background: true`), its event stream (`stream: true`), or the finished
  response.
- `GET /v1/responses/{id}` is the response as its log leaves it so far;
  with `?stream=true&starting_after=N` the events after number N, replayed
  from the log and then followed live.
- `POST /v1/responses/{id}/cancel` stops it and answers the cancelled response.

Closing a stream never cancels the response, background or not: it keeps
running and the client resumes it with `GET ?stream=true&starting_after=`
the last `sequence_number` it got. Events are a pure function of the log
(`responses_format`), so every read numbers them alike. Auth, tenants,
limits and retention are the generation's; errors are in OpenAI's shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from spool.log import dumps
from spool.metrics import RECORDER, STREAMS
from webapp.auth import authenticate
from webapp.body import require_json_object
from webapp.errors import ApiError
from webapp.facades.chat_format import generation_error
from webapp.facades.chat_request import invalid
from webapp.facades.openai_common import (
    GENERATION_ID_HEADER,
    NO_RETRY,
    STREAM_CONTENT_TYPE,
    STREAM_HEADERS,
    install_error_handlers,
    openai_error,
    validate,
)
from webapp.facades.responses_format import (
    NOT_STARTED,
    ResponseEvents,
    event_line,
    generation_id,
    response_id,
)
from webapp.facades.responses_request import client_param, translate
from webapp.facades.responses_store import (
    ECHO_FIELD,
    from_log,
    head,
    resolve_references,
    response_head,
)
from webapp.facades.streaming import translate_log
from webapp.launch import find_generation, launch_generation, wait_for_end
from webapp.relay.hub import HubUnavailable
from webapp.relay.presence import Presence
from webapp.relay.stream import MAX_EVENT_ID, presence
from webapp.services import Services, services

bp = Blueprint("responses", __name__)
install_error_handlers(bp)

# How long cancel waits for the worker's `cancelled` (it closes the upstream within 1 s).
CANCEL_WAIT_S = 3.0
TRUE_VALUES, FALSE_VALUES = ("true", "1"), ("false", "0", "")

# What a stream's head is built from (`response_head`), and its abandon window.
STREAM_FIELDS = (ECHO_FIELD, "created_ms", "metadata", "abandon_after_s")


def _events_stream(svc: Services, gen_id: str, events: ResponseEvents, watch: Presence,
                   abandon_s: int | None) -> Iterator[bytes]:
    """The response's events after `events.starting_after`, until its terminal one.

    A stream cut on the server side (Redis lost) ends with an `error` event
    numbered as the last event sent, so resuming from it loses nothing; the
    response goes on meanwhile.
    """
    yield from translate_log(svc, gen_id, events, watch=watch, abandon_s=abandon_s)
    if not events.ended:
        yield event_line("error", {
            "type": "error", "code": "stream_interrupted", "param": None,
            "sequence_number": max(events.last_sequence_number, events.starting_after),
            "message": f"the stream was interrupted; the response continues: resume it with "
                       f"GET /v1/responses/{events.head['id']}?stream=true&starting_after=<the "
                       "last sequence_number received>"})


def _stream(svc: Services, gen_id: str, events: ResponseEvents,
            abandon_s: int | None) -> Response:
    RECORDER.inc(STREAMS)
    return Response(_events_stream(svc, gen_id, events, presence(svc), abandon_s),
                    content_type=STREAM_CONTENT_TYPE,
                    headers={GENERATION_ID_HEADER: gen_id, **STREAM_HEADERS})


def _json(gen_id: str, body: dict[str, Any], status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers[GENERATION_ID_HEADER] = gen_id
    return response


@bp.post("/v1/responses")
def create() -> ResponseReturnValue:
    """Create a response: queued (background), streamed, or waited for."""
    svc = services()
    tenant = authenticate(svc.settings)
    fields = require_json_object(request)
    if "input" in fields:
        fields["input"] = resolve_references(svc, tenant, fields["input"])
    asked = translate(fields, svc.settings.default_provider, svc.settings.provider_names)
    body = validate(svc, asked.generation, asked.echo["model"],
                    lambda param: client_param(param, asked))
    launched = launch_generation(svc, tenant, body,
                                 record_extra={ECHO_FIELD: dumps(asked.echo)})
    gen_id = launched.gen_id
    events = ResponseEvents(head(gen_id, launched.created_ms or 0, body.metadata, asked.echo))
    if asked.stream:
        return _stream(svc, gen_id, events, launched.abandon_after_s)
    if asked.background:
        events.feed("status", {"status": "queued"})
        return _json(gen_id, events.response())
    return _wait(svc, gen_id, launched.abandon_after_s)


def _wait(svc: Services, gen_id: str, abandon_s: int | None) -> Response:
    """The finished response, or 504 if it takes longer than SPOOL_CHAT_TIMEOUT_S;
    the waiting client counts as a reader."""
    try:
        record = wait_for_end(svc, gen_id, svc.settings.chat_timeout_s,
                              watch=presence(svc), abandon_s=abandon_s)
    except HubUnavailable:
        record = None
    if record is None or "ended" not in record:
        resp_id = response_id(gen_id)
        raise ApiError(504, f"the response did not finish within "
                       f"{svc.settings.chat_timeout_s:g}s; it keeps running: read it with "
                       f"GET /v1/responses/{resp_id}",
                       headers={**NO_RETRY, GENERATION_ID_HEADER: gen_id})
    events = from_log(svc, gen_id, record)
    if events.status == "failed":
        status, error = generation_error(orjson.loads(record.get("error") or "{}"))
        response = openai_error(status, error)
        response.headers[GENERATION_ID_HEADER] = gen_id
        return response
    return _json(gen_id, events.response())


def _query(name: str) -> str | None:
    """One query parameter's value; given twice it is a 400 (which one would be meant?)."""
    values = request.args.getlist(name)
    if len(values) > 1:
        raise invalid(f"{name} must be given at most once", name)
    return values[0] if values else None


def _flag(name: str) -> bool:
    value = (_query(name) or "false").lower()
    if value not in TRUE_VALUES + FALSE_VALUES:
        raise invalid(f"{name} must be true or false", name)
    return value in TRUE_VALUES


def _starting_after() -> int:
    raw = _query("starting_after")
    if raw is None:
        return NOT_STARTED
    if not raw.isdigit() or int(raw) > MAX_EVENT_ID:
        raise invalid(f"starting_after must be an integer from 0 to {MAX_EVENT_ID}",
                      "starting_after")
    return int(raw)


def _find(svc: Services, resp_id: str, tenant: str,
          fields: tuple[str, ...] | None = None) -> tuple[str, dict[str, str]]:
    """(generation id, record) of a response of `tenant`; 404, or 410 naming the generation.

    With `fields`, only those are read, on the readers' pool (as a stream's opening does).
    """
    gen_id = generation_id(resp_id)
    try:
        if fields is not None:
            return gen_id, find_generation(svc, gen_id, tenant, fields,
                                           svc.reader_generations)
        return gen_id, find_generation(svc, gen_id, tenant)
    except ApiError as exc:
        if exc.status == 410:
            exc.headers = {**(exc.headers or {}), GENERATION_ID_HEADER: gen_id}
        raise


@bp.get("/v1/responses/<resp_id>")
def retrieve(resp_id: str) -> ResponseReturnValue:
    """The response so far, or (`stream=true`) its events after `starting_after`."""
    svc = services()
    tenant = authenticate(svc.settings)
    stream, after = _flag("stream"), _starting_after()
    if stream:
        # A crowd of readers must not each fetch the request (a long prompt can be
        # hundreds of KB): the head needs a few fields, the request only where the
        # generation was not made by this facade (no echo field to build it from).
        gen_id, record = _find(svc, resp_id, tenant, STREAM_FIELDS)
        if ECHO_FIELD not in record:
            record.update(svc.reader_generations.load_fields(gen_id, ("request",)) or {})
        abandon = record.get("abandon_after_s")
        events = ResponseEvents(response_head(gen_id, record), after)
        return _stream(svc, gen_id, events, int(abandon) if abandon else None)
    gen_id, record = _find(svc, resp_id, tenant)
    return _json(gen_id, from_log(svc, gen_id, record).response())


@bp.post("/v1/responses/<resp_id>/cancel")
def cancel(resp_id: str) -> ResponseReturnValue:
    """Stop the response; the cancelled response (409 once completed or failed)."""
    svc = services()
    tenant = authenticate(svc.settings)
    gen_id, record = _find(svc, resp_id, tenant)
    status = svc.generations.request_cancel(gen_id, record)
    if status in ("completed", "failed"):
        raise ApiError(409, f"the response is already {status}; it cannot be cancelled",
                       headers={GENERATION_ID_HEADER: gen_id})
    try:
        ended = wait_for_end(svc, gen_id, CANCEL_WAIT_S) or record
    except HubUnavailable:
        ended = record
    return _json(gen_id, from_log(svc, gen_id, ended).response())
