"""Reading a batch upload: a JSON object with `requests`, or NDJSON.

Every row is validated like a generation request before anything is
written, so a batch is accepted whole or rejected with the first bad row's
number in `param` (`requests.<row>.<field>`, rows counted from 0 in both
formats; NDJSON messages also name the 1-based line).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import gevent
import orjson
from flask import Request

from spool.schemas import (
    MAX_JSON_DEPTH,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_CHARS,
    GenerationRequest,
    RequestError,
    parse_generation_request,
)
from webapp.body import json_depth_exceeds, read_body, refuse_duplicate_keys
from webapp.errors import ApiError

MAX_BATCH_BODY_BYTES = 32 * 1024 * 1024  # an upload may be far larger than one request
MAX_CUSTOM_ID_CHARS = 256
YIELD_EVERY_ROWS = 100  # rows validated between cooperative yields
# A row sits two levels down a JSON body, so this matches the limit on a
# single request's body (orjson reads 1024 levels but writes only 254).
MAX_ROW_DEPTH = MAX_JSON_DEPTH - 2
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                          "application/x-jsonlines", "application/jsonlines"})
BATCH_FIELDS = frozenset({"requests", "metadata", "idempotency_key"})
# Nobody reads a batch row token by token: sentence-sized deltas cut the
# event writes several-fold, which keeps the shared workers quick for
# interactive work (bench/batch.py). A row may still ask for "none".
BATCH_DEFAULT_BUFFER = "sentence"


@dataclass
class BatchUpload:
    """A validated batch: rows (custom id, request), metadata, idempotency key."""

    rows: list[tuple[str, GenerationRequest]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None


def read_upload(request: Request, max_rows: int, max_tokens_limit: int,
                providers: Collection[str]) -> BatchUpload:
    """Decode and validate the body of `POST /v1/batches` (400/413/415 on failure)."""
    request.max_content_length = MAX_BATCH_BODY_BYTES
    header_key = request.headers.get("Idempotency-Key", "").strip() or None
    if request.mimetype == "application/json":
        raw_rows, upload = _json_body(request)
        line_numbers: list[int] | None = None
    elif request.mimetype in NDJSON_TYPES:
        raw_rows, line_numbers = _ndjson_body(request)
        upload = BatchUpload()
    else:
        raise ApiError(415, "Content-Type must be application/json or application/x-ndjson")
    upload.idempotency_key = upload.idempotency_key or header_key
    if not raw_rows:
        raise ApiError(400, "a batch needs at least one request", param="requests")
    if len(raw_rows) > max_rows:
        raise ApiError(400, f"a batch holds at most {max_rows} requests", param="requests")
    seen: set[str] = set()
    for index, payload in enumerate(raw_rows):
        if index % YIELD_EVERY_ROWS == 0:
            gevent.sleep(0)  # validation is CPU work: let this process's streams run
        where = f" (line {line_numbers[index]})" if line_numbers else ""
        try:
            upload.rows.append(_row(payload, index, seen, max_tokens_limit, providers))
        except RequestError as exc:
            raise ApiError(400, f"row {index}{where}: {exc.message}", param=exc.param) from None
    return upload


def _json_body(request: Request) -> tuple[list[Any], BatchUpload]:
    raw = read_body(request)  # 413 past the limit, chunked uploads included
    try:
        payload = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc.msg}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, 'request body must be a JSON object with "requests"')
    refuse_duplicate_keys(raw)  # too deep a body: found by the row checks below
    unknown = sorted(set(payload) - BATCH_FIELDS)
    if unknown:
        raise ApiError(400, f"{unknown[0]}: unknown field", param=unknown[0])
    rows = payload.get("requests")
    if not isinstance(rows, list):
        raise ApiError(400, "requests must be a list of request objects", param="requests")
    key = payload.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 256):
        raise ApiError(400, "idempotency_key must be a string of 1-256 characters",
                       param="idempotency_key")
    return rows, BatchUpload(metadata=_metadata(payload.get("metadata")), idempotency_key=key)


def _ndjson_body(request: Request) -> tuple[list[Any], list[int]]:
    rows: list[Any] = []
    line_numbers: list[int] = []
    for number, line in enumerate(read_body(request).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            index = len(rows)
            raise ApiError(400, f"row {index} (line {number}): malformed JSON: {exc.msg}",
                           param=f"requests.{index}") from None
        refuse_duplicate_keys(line, f"row {len(rows) - 1} (line {number}): ")
        line_numbers.append(number)
    return rows, line_numbers


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if (not isinstance(value, dict) or len(value) > MAX_METADATA_KEYS
            or not all(isinstance(k, str) and 0 < len(k) <= MAX_METADATA_KEY_CHARS
                       and isinstance(v, str) and len(v) <= MAX_METADATA_VALUE_CHARS
                       for k, v in value.items())):
        raise ApiError(400, f"metadata must map at most {MAX_METADATA_KEYS} short keys to "
                       "strings", param="metadata")
    return value


def _row(payload: Any, index: int, seen: set[str],
         max_tokens_limit: int, providers: Collection[str]) -> tuple[str, GenerationRequest]:
    prefix = f"requests.{index}"
    if not isinstance(payload, dict):
        raise RequestError("each request must be a JSON object", prefix)
    if json_depth_exceeds(payload, MAX_ROW_DEPTH):
        raise RequestError(f"the request nests deeper than {MAX_ROW_DEPTH} levels", prefix)
    body = dict(payload)
    custom_id = body.pop("custom_id", None)
    if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= MAX_CUSTOM_ID_CHARS:
        raise RequestError(f"custom_id must be a string of 1-{MAX_CUSTOM_ID_CHARS} characters",
                           f"{prefix}.custom_id")
    if custom_id in seen:
        raise RequestError(f"custom_id {custom_id!r} is used twice", f"{prefix}.custom_id")
    seen.add(custom_id)
    if "idempotency_key" in body:
        raise RequestError("rows cannot carry idempotency_key; give the batch one",
                           f"{prefix}.idempotency_key")
    if body.get("priority", "batch") != "batch":
        raise RequestError('batch rows run with priority "batch"', f"{prefix}.priority")
    body.setdefault("buffer", BATCH_DEFAULT_BUFFER)
    request = parse_generation_request(body, max_tokens_limit=max_tokens_limit,
                                       param_prefix=f"{prefix}.", providers=providers)
    return custom_id, request.model_copy(update={"priority": "batch"})

