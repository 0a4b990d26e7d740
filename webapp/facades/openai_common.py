"""What the OpenAI-shaped facades share: error handlers, headers, request validation.

Chat Completions (`chat`) and the Responses API (`responses`) answer errors
in OpenAI's shape (`{"error": {message, type, param, code}}`), because
OpenAI's SDKs parse them, and validate their translated request with the
core's rules, reporting a failure in the client's parameter names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from flask import Blueprint, Response, jsonify
from werkzeug.exceptions import HTTPException

from spool.catalog import configured_providers
from spool.schemas import GenerationRequest, RequestError, parse_generation_request
from webapp.errors import ApiError
from webapp.facades.chat_format import error_object
from webapp.facades.chat_request import FacadeError, invalid
from webapp.services import Services

log = logging.getLogger("spool.facade")

GENERATION_ID_HEADER = "Spool-Generation-Id"
# OpenAI's SDKs obey this: never retry what would start a second generation for nothing.
NO_RETRY = {"x-should-retry": "false"}
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"
# Spool's status -> (OpenAI error type, code) for errors raised before a generation exists.
API_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_value"),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("invalid_request_error", "conflict"),
    410: ("invalid_request_error", "expired"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("requests", "rate_limit_exceeded"),
    503: ("server_error", "unavailable"),
    504: ("server_error", "timeout"),
}
HTTP_MESSAGES = {413: "request body is too large", 405: "method not allowed for this route"}


def openai_error(status: int, body: dict[str, Any],
                 headers: dict[str, str] | None = None) -> Response:
    """An error response in OpenAI's format."""
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _facade_error(exc: FacadeError) -> Response:
    return openai_error(exc.status, error_object(exc.message, exc.type, exc.code, exc.param))


def _api_error(exc: ApiError) -> Response:
    kind, code = API_ERRORS.get(exc.status, ("server_error", exc.type))
    return openai_error(exc.status, error_object(exc.message, kind, code, exc.param), exc.headers)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = HTTP_MESSAGES.get(status) or exc.description or exc.name
    return _api_error(ApiError(status, message))


def _redis_error(exc: redis.RedisError) -> Response:
    log.warning("redis unavailable: %s", type(exc).__name__)
    body = error_object("the event store is unavailable; retry shortly", "server_error",
                        "unavailable")
    return openai_error(503, body, {"Retry-After": "1"})


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error in the facade")
    return openai_error(500, error_object("internal error", "server_error", None))


def install_error_handlers(bp: Blueprint) -> None:
    """Answer every error raised in `bp`'s routes in OpenAI's shape."""
    bp.register_error_handler(FacadeError, _facade_error)
    bp.register_error_handler(ApiError, _api_error)
    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(redis.RedisError, _redis_error)
    bp.register_error_handler(Exception, _unexpected)


def validate(svc: Services, generation: dict[str, Any], model: str,
             client_param: Callable[[str | None], str | None]) -> GenerationRequest:
    """The core's validation of a translated request, its errors in the client's terms.

    `client_param` maps a core `param` (`messages.0.role`) to the name the
    client used; an unconfigured provider is the client's `model`.
    """
    provider = generation["provider"]
    if provider not in configured_providers(svc.settings):
        raise invalid(f"The model `{model}` is not available: provider "
                      f"{provider!r} is not configured on this server", "model",
                      "model_not_found")
    try:
        return parse_generation_request(generation,
                                        max_tokens_limit=svc.settings.max_tokens_limit,
                                        providers=svc.settings.provider_names)
    except RequestError as exc:
        param = client_param(exc.param)
        message = exc.message
        if exc.param and message.startswith(f"{exc.param}: "):
            message = f"{param}: {message[len(exc.param) + 2:]}"
        raise invalid(message, param) from None
