"""The batch routes' part of `GET /openapi.json` (docs/batches.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from spool import apischema as out

BATCH_MODELS: list[type[BaseModel]] = [out.BatchView, out.BatchResultLine,
                                       out.BatchProgressEvent]


def batch_paths(ref: Callable[[type[BaseModel]], dict[str, str]],
                json: Callable[..., dict[str, Any]],
                errors: Callable[..., dict[str, Any]],
                position: Callable[[str, str, str], dict[str, Any]]) -> dict[str, Any]:
    """The five batch operations, built with openapi.py's helpers (no import cycle)."""
    batch_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
                "description": "A batch id, `batch_` + url-safe characters"}
    return {
        "/v1/batches": {"post": {
            "operationId": "createBatch",
            "summary": "Submit many generations at `batch` priority",
            "requestBody": {"required": True,
                            "description": "JSON, or NDJSON: one BatchRow per line",
                            "content": {
                                "application/json": {"schema": ref(out.BatchRequest)},
                                "application/x-ndjson": {"schema": ref(out.BatchRow)}}},
            "responses": {"202": json(out.BatchView, "Accepted"),
                          **errors(400, 401, 413, 415, 429, 503)},
        }},
        "/v1/batches/{id}": {"get": {
            "operationId": "getBatch", "summary": "A batch's status and counts",
            "parameters": [batch_id],
            "responses": {"200": json(out.BatchView, "The batch"),
                          **errors(401, 404, 429, 503)},
        }},
        "/v1/batches/{id}/results": {"get": {
            "operationId": "batchResults",
            "summary": "One NDJSON line per finished row, streamed",
            "parameters": [batch_id],
            "responses": {"200": {"description": "NDJSON lines", "content": {
                "application/x-ndjson": {"schema": ref(out.BatchResultLine)}}},
                          **errors(401, 404, 429, 503)},
        }},
        "/v1/batches/{id}/events": {"get": {
            "operationId": "batchEvents",
            "summary": "Server-Sent `progress` events, ending with `done` or `cancelled`",
            "parameters": [batch_id,
                           position("after", "query", "Send only events with id > after"),
                           position("Last-Event-ID", "header",
                                    "As `after` (sent by EventSource)")],
            "responses": {"200": {"description": "The event stream; each `data:` is a "
                                                 "BatchProgressEvent",
                                  "content": {"text/event-stream": {
                                      "schema": ref(out.BatchProgressEvent)}}},
                          "204": {"description": "The resume point is at or past the end"},
                          **errors(400, 401, 404, 429, 503)},
        }},
        "/v1/batches/{id}/cancel": {"post": {
            "operationId": "cancelBatch",
            "summary": "Drop queued rows and cancel running ones",
            "parameters": [batch_id],
            "responses": {"202": json(out.BatchView, "Cancellation under way"),
                          **errors(401, 404, 409, 429, 503)},
        }},
    }
