"""Request body decoding: content type, size, strict JSON."""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask import Request

from spool.schemas import MAX_JSON_DEPTH
from webapp.errors import ApiError


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when `value` nests containers deeper than `limit` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)
    # The parsed value is orjson's; this pass only looks at keys, so keep nothing.


def duplicate_key(raw: bytes | str) -> str | None:
    """The first key that appears twice in one JSON object of `raw`, else None.

    orjson (like most parsers) silently keeps the last of duplicate keys, so
    `{"max_tokens": 1, "max_tokens": 99999}` would mean different things to
    Spool and to a proxy or validator in front of it. A second pass with the
    standard library's pair hook finds them; call it only on text orjson
    already accepted and whose depth was checked (the stdlib parser recurses).
    """
    try:
        json.loads(raw, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as exc:
        return exc.key
    except (ValueError, RecursionError):
        return None  # orjson's verdict stands; this pass only looks for duplicates
    return None


def refuse_duplicate_keys(raw: bytes | str, where: str = "") -> None:
    """400 when `raw` holds a JSON object with a key twice."""
    key = duplicate_key(raw)
    if key is not None:
        raise ApiError(400, f"{where}duplicate key in JSON object: {key!r}")


def decode_json(raw: bytes) -> Any:
    """Strict JSON, or a 400 ApiError.

    orjson rejects NaN/Infinity, invalid UTF-8, lone surrogates and nesting
    past 1024 levels; duplicate keys are refused too. The depth check keeps
    every accepted body well inside what orjson can write back out (254
    levels), so nothing accepted here can fail later as a 500.
    """
    if not raw.strip():
        raise ApiError(400, "request body is empty")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc.msg}") from None
    # Each level opens a bracket: a body with few cannot nest deeply (and
    # counting them is ~20x cheaper than walking the parsed value).
    if (raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH
            and json_depth_exceeds(payload)):
        raise ApiError(400, f"JSON nests deeper than {MAX_JSON_DEPTH} levels")
    refuse_duplicate_keys(raw)
    return payload


def read_body(request: Request) -> bytes:
    """The raw body, or 413 past the size limit.

    With a Content-Length, an oversized body is refused up front, unread (as
    werkzeug would), and the rest is read straight from the server's input,
    which stops at that length: werkzeug's `get_data` wraps it in two more
    streams, ~16 µs of a POST's ~0.5 ms. A chunked body has no length, and
    werkzeug would silently cut it at the limit (turning a too-large body
    into "malformed JSON"), so it is read here with one byte to spare to
    tell the two apart.
    """
    limit = request.max_content_length
    length = request.content_length
    if length is not None:
        if limit is not None and length > limit:
            raise ApiError(413, "request body is too large")
        body: bytes = request.environ["wsgi.input"].read(length)
        return body
    if limit is None:
        return request.get_data(cache=False)
    raw: bytes = request.environ["wsgi.input"].read(limit + 1)
    if len(raw) > limit:
        raise ApiError(413, "request body is too large")
    return raw


def require_json_object(request: Request) -> dict[str, Any]:
    """Decode the body as a JSON object or raise the matching ApiError (415/413/400)."""
    if request.mimetype != "application/json":
        raise ApiError(415, "Content-Type must be application/json")
    raw = read_body(request)
    payload = decode_json(raw)
    if not isinstance(payload, dict):
        raise ApiError(400, "request body must be a JSON object")
    return payload
