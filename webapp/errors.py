"""API.md's error body for every non-2xx answer, Flask's own included."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("spool.web")

STATUS_TYPES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    410: "expired",
    413: "too_large",
    414: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    431: "too_large",
    503: "unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """An error answered as `{"error": {type, message, param}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type or STATUS_TYPES.get(status, "error")
        self.message = message
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}


def error_response(error: ApiError) -> Response:
    """Render an ApiError."""
    body: dict[str, Any] = {
        "error": {"type": error.type, "message": error.message, "param": error.param}
    }
    body.update(error.extra)
    response = jsonify(body)
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def _http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    messages = {
        404: "no such route",
        405: "method not allowed for this route",
        413: "request body is too large",
    }
    message = messages.get(status) or exc.description or exc.name
    response = error_response(ApiError(status, message))
    if status == 405 and exc.get_response().headers.get("Allow"):
        response.headers["Allow"] = exc.get_response().headers["Allow"]
    return response


def _redis_down(exc: Exception) -> Response:
    # Connection loss, timeouts, LOADING, OOM (maxmemory + noeviction),
    # READONLY (a failover), MISCONF, EXECABORT from a MULTI, CLUSTERDOWN...:
    # each means "try again shortly". The message names the reply, so a
    # Redis error that is really a bug (WRONGTYPE, a script error) shows in the log.
    log.warning("redis unavailable: %s: %s", type(exc).__name__, str(exc)[:200])
    return error_response(ApiError(503, "the event store is unavailable; retry shortly",
                                   headers={"Retry-After": "1"}))


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(ApiError(500, "internal error", type="internal_error"))


def register_error_handlers(app: Flask) -> None:
    """Install the handlers so no path answers HTML or a traceback."""
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, _http_exception)
    # Every Redis error is "unavailable, retry": a full (maxmemory) or read-only
    # (failing-over) Redis, or a MULTI answered EXECABORT, is not a client's bug.
    app.register_error_handler(redis.RedisError, _redis_down)
    app.register_error_handler(Exception, _unexpected)
