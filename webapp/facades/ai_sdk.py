"""The Vercel AI SDK facade: `useChat` with `resume: true`, backed by Spool generations.

- `POST /v1/ai-sdk/chat` takes what `DefaultChatTransport` sends (plus Spool's
  generation fields through the transport's `body`), starts a generation for
  the chat, remembers it as the chat's active generation, and answers with
  the UI message stream of that generation.
- `GET /v1/ai-sdk/chat/{chatId}/stream` is where the transport reconnects
  (`reconnectToStream`, called by `useChat({resume: true})` on mount): it
  replays the chat's generation from its start and follows it live, or
  answers 204 when the chat has nothing in progress.

Closing either stream never cancels the generation (a reload is not a
stop); `POST /v1/generations/{id}/cancel` does, the id being the UI
message's id and the `Spool-Generation-Id` header. Auth, tenants, limits,
errors (API.md's shape) and CORS are the app's, as on every route.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from spool.ids import is_generation_id
from spool.metrics import RECORDER, STREAMS
from spool.schemas import GenerationRequest, RequestError, parse_generation_request
from webapp.auth import authenticate
from webapp.body import require_json_object
from webapp.errors import ApiError
from webapp.facades.ai_sdk_format import STREAM_HEADERS, UIMessageStream, interrupted
from webapp.facades.ai_sdk_request import (
    MAX_CHAT_ID_CHARS,
    ChatRequest,
    client_param,
    translate,
)
from webapp.facades.streaming import translate_log
from webapp.launch import launch_generation
from webapp.relay.presence import Presence
from webapp.relay.stream import presence
from webapp.services import Services, services

bp = Blueprint("ai_sdk", __name__)

GENERATION_ID_HEADER = "Spool-Generation-Id"
CONTENT_TYPE = "text/event-stream; charset=utf-8"
ABANDON_FIELD = "abandon_after_s"  # of the record: kept alive while this stream reads


def _validate(svc: Services, chat: ChatRequest) -> GenerationRequest:
    """The core's validation, with message indexes in the client's terms."""
    try:
        return parse_generation_request(chat.generation,
                                        max_tokens_limit=svc.settings.max_tokens_limit,
                                        providers=svc.settings.provider_names)
    except RequestError as exc:
        param = client_param(exc.param, chat)
        message = exc.message
        if exc.param and message.startswith(f"{exc.param}: "):
            message = f"{param}: {message[len(exc.param) + 2:]}"
        raise ApiError(400, message, param=param) from None


def remember(svc: Services, tenant: str, chat_id: str, gen_id: str) -> None:
    """Make `gen_id` the chat's active generation, kept as long as the generation lives."""
    svc.redis.set(svc.keys.ai_sdk_chat(tenant, chat_id), gen_id,
                  ex=svc.log.retention.live_s)


def active_generation(svc: Services, tenant: str, chat_id: str) -> dict[str, str] | None:
    """The record of the chat's generation if it is still in progress, else None."""
    if len(chat_id) > MAX_CHAT_ID_CHARS:
        return None  # never stored: POST refuses such an id
    gen_id = svc.redis.get(svc.keys.ai_sdk_chat(tenant, chat_id))
    if not isinstance(gen_id, str) or not is_generation_id(gen_id):
        return None
    record = svc.reader_generations.load_fields(gen_id, ("ended", ABANDON_FIELD))
    if record is None or record.get("tenant") != tenant or "ended" in record:
        return None
    record["id"] = gen_id
    return record


def ui_stream(svc: Services, gen_id: str, watch: Presence,
              abandon_s: int | None) -> Iterator[bytes]:
    """The generation as one UI message, from its start, until [DONE].

    A stream cut on the server side ends with an `error` chunk (no [DONE]), so
    the client does not take a partial answer for a whole one; it can
    reconnect, and the generation goes on meanwhile.
    """
    message = UIMessageStream(gen_id)
    yield b"".join(message.opening())
    yield from translate_log(svc, gen_id, message, watch=watch, abandon_s=abandon_s)
    if not message.ended:
        yield interrupted(gen_id)


def _respond(svc: Services, gen_id: str, abandon_field: str | None) -> Response:
    """The streaming response; `abandon_field` is the record's `abandon_after_s`."""
    RECORDER.inc(STREAMS)
    abandon_s = int(abandon_field) if abandon_field else None
    return Response(ui_stream(svc, gen_id, presence(svc), abandon_s),
                    content_type=CONTENT_TYPE,
                    headers={GENERATION_ID_HEADER: gen_id, **STREAM_HEADERS})


@bp.post("/v1/ai-sdk/chat")
def chat() -> ResponseReturnValue:
    """Start the chat's next answer and stream it as a UI message."""
    svc = services()
    tenant = authenticate(svc.settings)
    chat_request = translate(require_json_object(request))
    body = _validate(svc, chat_request)
    launched = launch_generation(svc, tenant, body)
    remember(svc, tenant, chat_request.chat_id, launched.gen_id)
    abandon = launched.abandon_after_s
    return _respond(svc, launched.gen_id, str(abandon) if abandon else None)


@bp.get("/v1/ai-sdk/chat/<path:chat_id>/stream")
def resume(chat_id: str) -> ResponseReturnValue:
    """Replay the chat's answer in progress from its start and follow it; 204 if none."""
    svc = services()
    tenant = authenticate(svc.settings)
    record = active_generation(svc, tenant, chat_id)
    if record is None:
        return Response(status=204)
    return _respond(svc, record["id"], record.get(ABANDON_FIELD))
