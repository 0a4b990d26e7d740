"""The OpenAI-compatible facade: `POST /v1/chat/completions` and `GET /v1/models`.

Each completion is an ordinary Spool generation (queued, logged, resumable,
cancellable, counted in metrics); this blueprint only translates the request
in and the event log out. Closing a facade stream does not cancel the
generation: the client resumes it from `/v1/generations/{id}/events`, the id
being in the `Spool-Generation-Id` header of every response.

Errors here use OpenAI's shape (`{"error": {message, type, param, code}}`),
not Spool's, because OpenAI's SDKs parse them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from spool.catalog import model_ids
from webapp.auth import authenticate
from webapp.body import require_json_object
from webapp.facades.chat_format import (
    ChunkStream,
    cancelled_error,
    completion,
    error_object,
    generation_error,
)
from webapp.facades.chat_request import FacadeError, core_param, translate
from webapp.facades.openai_common import (
    GENERATION_ID_HEADER,
    NO_RETRY,
    STREAM_CONTENT_TYPE,
    STREAM_HEADERS,
    install_error_handlers,
    openai_error,
    validate,
)
from webapp.facades.streaming import translate_log
from webapp.facades.wire import data_line
from webapp.launch import launch_generation, wait_for_end
from webapp.relay.hub import HubUnavailable
from webapp.relay.presence import Presence
from webapp.relay.stream import presence
from webapp.services import Services, services

bp = Blueprint("facade", __name__)
install_error_handlers(bp)


@bp.post("/v1/chat/completions")
def chat_completions() -> ResponseReturnValue:
    """OpenAI's Chat Completions, streamed or not, backed by a Spool generation."""
    svc = services()
    tenant = authenticate(svc.settings)
    completion_request = translate(require_json_object(request), svc.settings.default_provider,
                                   svc.settings.provider_names)
    body = validate(svc, completion_request.generation, completion_request.model,
                    lambda param: core_param(param, completion_request))
    launched = launch_generation(svc, tenant, body)
    gen_id = launched.gen_id
    # Known at launch: the facade takes no idempotency key, so it is always new.
    created = (launched.created_ms or 0) // 1000
    if completion_request.stream:
        chunks = ChunkStream(gen_id, created, completion_request.model,
                             completion_request.include_usage)
        # The app's reader registry is looked up here: the stream runs outside the app context.
        return Response(stream_chunks(svc, gen_id, chunks, presence(svc),
                                      launched.abandon_after_s),
                        content_type=STREAM_CONTENT_TYPE,
                        headers={GENERATION_ID_HEADER: gen_id, **STREAM_HEADERS})
    response = wait_for_completion(svc, gen_id, created, completion_request.model,
                                   launched.abandon_after_s)
    response.headers[GENERATION_ID_HEADER] = gen_id
    return response


def stream_chunks(svc: Services, gen_id: str, chunks: ChunkStream, watch: Presence,
                  abandon_s: int | None) -> Iterator[bytes]:
    """The generation's events as chunk lines, until [DONE] or an error line.

    The client counts as a reader in `watch` (`abandon_s`: the generation's
    `abandon_after_s`).

    If the stream is cut on the server side (Redis lost), the client gets an
    error line naming the generation, so an SDK raises rather than taking a
    partial answer for a whole one; the generation itself goes on.
    """
    yield chunks.opening()
    yield from translate_log(svc, gen_id, chunks, watch=watch, abandon_s=abandon_s)
    if not chunks.ended:
        yield data_line(error_object(
            f"the stream was interrupted; generation {gen_id} continues: resume it from "
            f"/v1/generations/{gen_id}/events", "server_error", "stream_interrupted"))


def wait_for_completion(svc: Services, gen_id: str, created: int, model: str,
                        abandon_s: int | None = None) -> Response:
    """Wait for the generation's end and answer a `chat.completion` (or its error);
    the waiting client counts as a reader."""
    try:
        record = wait_for_end(svc, gen_id, svc.settings.chat_timeout_s,
                              watch=presence(svc), abandon_s=abandon_s)
    except HubUnavailable:
        record = None
    if record is None or "ended" not in record:
        body = error_object(
            f"the generation did not finish within {svc.settings.chat_timeout_s:g}s; it keeps "
            f"running: read it from /v1/generations/{gen_id}", "server_error", "timeout")
        return openai_error(504, body, NO_RETRY)
    view = svc.generations.view(gen_id, record)
    if view["status"] == "failed":
        status, body = generation_error(view["error"])
        return openai_error(status, body)
    if view["status"] == "cancelled":
        status, body = cancelled_error(record.get("cancel") or view["finish_reason"])
        return openai_error(status, body, NO_RETRY)
    return jsonify(completion(gen_id, created, model, view["text"], view["tool_calls"],
                              view["finish_reason"], view["usage"]))


def _model_list() -> list[dict[str, Any]]:
    svc = services()
    return [
        {"id": f"{provider}/{model}", "object": "model", "created": 0, "owned_by": provider}
        for provider, model in model_ids(svc.settings)
    ]


@bp.get("/v1/models")
def models() -> ResponseReturnValue:
    """Configured providers' models in OpenAI's list format (`provider/model` ids)."""
    authenticate(services().settings)
    return jsonify(object="list", data=_model_list())


@bp.get("/v1/models/<path:model_id>")
def model(model_id: str) -> ResponseReturnValue:
    """One model, as OpenAI's `models.retrieve` expects; 404 model_not_found."""
    authenticate(services().settings)
    for entry in _model_list():
        if entry["id"] == model_id:
            return jsonify(entry)
    raise FacadeError(404, f"The model `{model_id}` does not exist", param="model",
                      code="model_not_found")
