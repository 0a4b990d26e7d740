"""Request body decoding: content type, size, strict JSON."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Request

from webapp.errors import ApiError


def require_json_object(request: Request) -> dict[str, Any]:
    """Decode the body as a JSON object or raise the matching ApiError.

    orjson rejects NaN/Infinity, invalid UTF-8 and nesting past 1024 levels,
    which is exactly what a strict API should refuse.
    """
    if request.mimetype != "application/json":
        raise ApiError(415, "Content-Type must be application/json")
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    if not raw.strip():
        raise ApiError(400, "request body is empty")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc.msg}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "request body must be a JSON object")
    return payload
