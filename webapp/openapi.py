"""`GET /openapi.json`: OpenAPI 3.1, built from the schemas the handlers use.

Request bodies come from `spool.schemas` (what the handlers validate with)
and responses from `spool.apischema`; the few facts that depend on this
server's configuration (configured providers, the max_tokens ceiling, auth)
are filled in from its settings, so the document describes what this very
server accepts.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from spool import apischema as out
from spool.catalog import configured_providers
from spool.schemas import GenerationRequest
from spool.settings import Settings
from webapp.batches.openapi import BATCH_MODELS, batch_paths
from webapp.relay.stream import MAX_EVENT_ID
from webapp.services import services

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
API_VERSION = "1.0.0"
ERROR_STATUSES = {
    400: "Invalid request (`param` names the field)",
    401: "Missing or unknown API key, or a bad or expired stream token",
    404: "Unknown id, or one that belongs to another tenant",
    409: "The generation already completed or failed",
    410: "The generation is past its retention period",
    413: "Request body over the size limit",
    414: "Request line (URL) over the size limit",
    415: "Body is not application/json",
    429: "Rate or concurrency limit; see Retry-After",
    503: "The event store (Redis) is unavailable",
}
RESPONSE_MODELS: list[type[BaseModel]] = [
    out.ErrorBody, out.TimeoutBody, out.CreatedGeneration, out.GenerationView,
    out.CancelAccepted, out.ModelList, out.Health, out.Readiness,
    *out.EVENT_SCHEMAS.values(),
    out.OpenAIErrorBody, out.ChatCompletion, out.ResponseObject, *BATCH_MODELS,
]
AI_SDK_STREAM = {"description": "The UI message stream (`x-vercel-ai-ui-message-stream: v1`): "
                                "`data:` chunks ending with `data: [DONE]`",
                 "headers": {"x-vercel-ai-ui-message-stream": {"schema": {"const": "v1"}},
                             "Spool-Generation-Id": {"schema": {"type": "string"}}},
                 # Each SSE event: a `data:` line (a JSON chunk, or `[DONE]`), no event name.
                 "content": {"text/event-stream": {"schema": {
                     "type": "object", "required": ["data"],
                     "properties": {"data": {"type": "string"}}}}}}
FACADE_STATUSES = (400, 401, 404, 413, 415, 429, 503)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str,
          headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(model)}},
    }
    if headers:
        response["headers"] = headers
    return response


def _errors(*statuses: int) -> dict[str, Any]:
    retry_after = {"Retry-After": {"required": True, "schema": {"type": "string"}}}
    return {
        str(status): _json(out.ErrorBody, ERROR_STATUSES[status],
                           retry_after if status == 429 else None)
        for status in statuses
    }


def components(settings: Settings) -> dict[str, Any]:
    """Schemas of every request and response model, adjusted to `settings`."""
    models = [(GenerationRequest, "validation"), (out.ChatCompletionRequest, "validation"),
              (out.AiSdkChatRequest, "validation"), (out.ResponsesCreateRequest, "validation"),
              (out.BatchRequest, "validation")]
    models += [(m, "serialization") for m in RESPONSE_MODELS]
    _, schema = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    schemas: dict[str, Any] = schema["$defs"]
    props = schemas["GenerationRequest"]["properties"]
    props["max_tokens"]["maximum"] = settings.max_tokens_limit
    provider = props["provider"]
    provider["anyOf"] = [{"enum": configured_providers(settings), "type": "string"},
                         {"type": "null"}]
    return schemas


def _openai_errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _json(out.OpenAIErrorBody, ERROR_STATUSES.get(status, "Error"))
            for status in statuses}


def facade_paths() -> dict[str, Any]:
    """The OpenAI-compatible facade (docs/facade.md); its errors are OpenAI-shaped."""
    return {
        "/v1/chat/completions": {"post": {
            "operationId": "chatCompletions",
            "summary": "OpenAI Chat Completions, streamed (`stream: true`) or not",
            "description": "Every response carries `Spool-Generation-Id`; resume a cut stream "
                           "from `/v1/generations/{id}/events`.",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _ref(out.ChatCompletionRequest)}}},
            "responses": {
                "200": {"description": "A `chat.completion`, or `chat.completion.chunk` "
                                       "events ending with `data: [DONE]`",
                        "content": {"application/json": {"schema": _ref(out.ChatCompletion)},
                                    "text/event-stream": {"schema": {"type": "string"}}}},
                **_openai_errors(*FACADE_STATUSES),
                "5XX": _json(out.OpenAIErrorBody, "The generation failed upstream, or did "
                                                  "not finish in time (504)"),
            },
        }},
        "/v1/models/{model_id}": {"get": {
            "operationId": "retrieveModel", "summary": "One model (OpenAI's models.retrieve)",
            "parameters": [{"name": "model_id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": _json(out.ModelEntry, "The model"),
                          **_openai_errors(401, 404, 429, 503)},
        }},
    }


def ai_sdk_paths() -> dict[str, Any]:
    """The Vercel AI SDK facade (docs/ai-sdk.md): useChat's POST and its resume GET."""
    return {
        "/v1/ai-sdk/chat": {"post": {
            "operationId": "aiSdkChat",
            "summary": "Start a chat's answer; the AI SDK UI message stream",
            "description": "Closing the stream does not cancel the generation; the message "
                           "id is the generation id (`POST /v1/generations/{id}/cancel`).",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _ref(out.AiSdkChatRequest)}}},
            "responses": {"200": AI_SDK_STREAM,
                          **_errors(400, 401, 413, 415, 429, 503)},
        }},
        "/v1/ai-sdk/chat/{chatId}/stream": {"get": {
            "operationId": "aiSdkChatResume",
            "summary": "Replay the chat's answer in progress from its start, then follow it",
            "parameters": [{"name": "chatId", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": AI_SDK_STREAM,
                          "204": {"description": "The chat has no answer in progress"},
                          **_errors(401, 429, 503),
                          "404": _json(out.ErrorBody, "A chat id no route can hold (one with "
                                                      "a line break, or starting with `/`)")},
        }},
    }


RESPONSE_EVENTS: dict[str, Any] = {
                   "description": "Responses stream events (`event: response.…` and a "
                                  "`data:` line each, with a dense `sequence_number`)",
                   "headers": {"Spool-Generation-Id": {"schema": {"type": "string"}}},
                   "content": {"text/event-stream": {"schema": {
                       "type": "object", "required": ["data"],
                       "properties": {"event": {"type": "string"},
                                      "data": {"type": "string"}}}}}}


def responses_paths() -> dict[str, Any]:
    """OpenAI's Responses API with background mode (docs/responses.md); OpenAI's errors."""
    resp_id = {"name": "response_id", "in": "path", "required": True,
               "schema": {"type": "string"}, "description": "`resp_…` (or the `gen_…` id)"}
    response = {"description": "The response object (or, streamed, its events)",
                "content": {"application/json": {"schema": _ref(out.ResponseObject)},
                            **RESPONSE_EVENTS["content"]}}
    return {
        "/v1/responses": {"post": {
            "operationId": "createResponse",
            "summary": "Create a response: background (queued at once), streamed, or waited for",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _ref(out.ResponsesCreateRequest)}}},
            "responses": {"200": response, **_openai_errors(*FACADE_STATUSES),
                          "5XX": _json(out.OpenAIErrorBody, "The response failed upstream, "
                                                            "or did not finish in time (504)")},
        }},
        "/v1/responses/{response_id}": {"get": {
            "operationId": "retrieveResponse",
            "summary": "The response so far; `stream=true` replays its events after "
                       "`starting_after` and follows it live",
            "parameters": [resp_id,
                           {"name": "stream", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["true", "false"]}},
                           _position("starting_after", "query",
                                     "Send only events with sequence_number > starting_after")],
            "responses": {"200": response,
                          **_openai_errors(400, 401, 404, 410, 414, 429, 503)},
        }},
        "/v1/responses/{response_id}/cancel": {"post": {
            "operationId": "cancelResponse", "summary": "Cancel a response",
            "parameters": [resp_id],
            "responses": {"200": _json(out.ResponseObject, "The cancelled response"),
                          **_openai_errors(401, 404, 409, 410, 429, 503)},
        }},
    }


def _id_param() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "A generation id, `gen_` + 22 or more url-safe characters"}


def _position(name: str, where: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": where, "required": False, "description": description,
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID}}


def _body() -> dict[str, Any]:
    return {"required": True,
            "content": {"application/json": {"schema": _ref(GenerationRequest)}}}


def paths() -> dict[str, Any]:
    """Every operation of API.md this server implements."""
    gen_errors = (400, 401, 413, 415, 429, 503)
    return {
        "/v1/generations": {"post": {
            "operationId": "createGeneration", "summary": "Enqueue a generation",
            "requestBody": _body(),
            "responses": {"202": _json(out.CreatedGeneration, "Queued"), **_errors(*gen_errors)},
        }},
        "/v1/chat": {"post": {
            "operationId": "chat", "summary": "Create a generation and wait for it",
            "requestBody": _body(),
            "responses": {"200": _json(out.GenerationView, "Finished"),
                          "504": _json(out.TimeoutBody, "Still running after the time limit"),
                          **_errors(*gen_errors)},
        }},
        "/v1/generations/{id}": {"get": {
            "operationId": "getGeneration", "summary": "A generation's record and text so far",
            "parameters": [_id_param()],
            "responses": {"200": _json(out.GenerationView, "The generation"),
                          **_errors(401, 404, 410, 429, 503)},
        }},
        "/v1/generations/{id}/cancel": {"post": {
            "operationId": "cancelGeneration", "summary": "Stop a generation",
            "parameters": [_id_param()],
            "responses": {"202": _json(out.CancelAccepted, "Cancellation requested"),
                          **_errors(401, 404, 409, 410, 429, 503)},
        }},
        "/v1/generations/{id}/events": {"get": {
            "operationId": "streamEvents",
            "summary": "Server-Sent Events of one generation, resumable",
            "description": "Event `data:` schemas: " + ", ".join(
                f"`{name}` → {model.__name__}" for name, model in out.EVENT_SCHEMAS.items()),
            "parameters": [
                _id_param(),
                {"name": "token", "in": "query", "required": False,
                 "schema": {"type": "string"}, "description": "The stream token of stream_url"},
                _position("after", "query", "Send only events with id > after"),
                _position("offset", "query", "Start after this many UTF-16 code units of text"),
                _position("Last-Event-ID", "header", "As `after` (sent by EventSource)"),
            ],
            "security": [{"bearerAuth": []}, {"streamToken": []}],
            "responses": {
                "200": {"description": "The event stream",
                        # Each SSE event: a `data:` line (a JSON chunk, or `[DONE]`), no event name.
                 "content": {"text/event-stream": {"schema": {
                     "type": "object", "required": ["data"],
                     "properties": {"data": {"type": "string"}}}}}},
                "204": {"description": "The resume point is at or past the terminal event"},
                **_errors(400, 401, 404, 410, 429, 503),
            },
        }},
        "/v1/models": {"get": {
            "operationId": "listModels", "summary": "Configured providers' models",
            "responses": {"200": _json(out.ModelList, "Models"),
                          **_openai_errors(401, 429, 503)},
        }},
        **facade_paths(),
        **ai_sdk_paths(),
        **responses_paths(),
        **batch_paths(_ref, _json, _errors, _position),
        **ops_paths(),
        "/healthz": {"get": {
            "operationId": "healthz", "summary": "Liveness", "security": [],
            "responses": {"200": _json(out.Health, "Serving")},
        }},
        "/readyz": {"get": {
            "operationId": "readyz", "summary": "Readiness: Redis and a live worker",
            "security": [],
            "responses": {"200": _json(out.Readiness, "Ready"),
                          "503": _json(out.Readiness, "Not ready")},
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1",
                                  "content": {"application/json": {
                                      "schema": {"type": "object"}}}}},
        }},
    }


def ops_paths() -> dict[str, Any]:
    """The demo page and the Prometheus scrape (healthz/readyz/openapi are in paths())."""
    return {
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus text format", "security": [],
            "responses": {"200": {"description": "Metrics", "content": {
                "text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/": {"get": {
            "operationId": "demoPage", "summary": "The demo chat page", "security": [],
            "responses": {"200": {"description": "HTML", "content": {
                "text/html": {"schema": {"type": "string"}}}}},
        }},
    }


def _without_auth(doc: dict[str, Any]) -> None:
    # Dev mode: nothing needs credentials, so the document claims none.
    for operations in doc["paths"].values():
        for operation in operations.values():
            operation.pop("security", None)
            operation["responses"].pop("401", None)
    doc.pop("security", None)
    doc["components"].pop("securitySchemes", None)


def document(settings: Settings) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for a server with `settings`."""
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Spool", "version": API_VERSION,
                 "description": "Durable, resumable LLM streaming gateway (API.md)."},
        "paths": paths(),
        "components": {
            "schemas": components(settings),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "streamToken": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
        "security": [{"bearerAuth": []}],
    }
    if not settings.auth_enabled:
        _without_auth(doc)
    return doc


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    """The OpenAPI 3.1 document of this server."""
    return jsonify(document(services().settings))
