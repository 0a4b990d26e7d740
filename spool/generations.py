"""Generation records: create, load, present, request cancellation.

The record hash holds what the event log does not: who owns the generation,
the validated request, timestamps and the terminal fields. The log's append
script keeps `status`, `last_seq` and `ended` in step with the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from spool.batches import on_generation_end
from spool.clock import iso, now_ms
from spool.events import CANCELLED, STATUS, TERMINAL_STATUSES, LogEntry, decode_entry
from spool.keys import Keys
from spool.limits import ACTIVE_FIELD, queue_release
from spool.log import EventLog, dumps
from spool.schemas import GenerationRequest

CANCEL_REASONS = ("user", "abandoned")
RECORD_OWNER_FIELD = "tenant"  # set when the record is written, never removed
# The record fields the generation view shows (everything but the request).
VIEW_FIELDS = ("status", "provider", "model", "finish_reason", "usage", "error", "metrics",
               "last_seq", "created_ms", "started_ms", "finished_ms", "metadata", "parsed")


@dataclass(frozen=True)
class Created:
    """Outcome of `create`: the id, and whether an idempotency key matched an older one."""

    gen_id: str
    existing: bool


def _json_field(record: dict[str, str], name: str) -> Any:
    raw = record.get(name)
    return orjson.loads(raw) if raw else None


class Generations:
    """Records of generations in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys, log: EventLog) -> None:
        self.client = client
        self.keys = keys
        self.log = log

    def new_record(
        self,
        tenant: str,
        request: GenerationRequest,
        *,
        provider: str,
        model: str,
        abandon_after_s: int | None,
        batch_id: str | None = None,
        holds_place: bool = False,
    ) -> dict[str, Any]:
        """The fields of a new generation's record (status queued, created now).

        `holds_place`: it takes one of its tenant's SPOOL_MAX_ACTIVE places,
        which whoever ends it gives back (`spool.limits.queue_release`).
        """
        body = request.model_dump(mode="json")
        body.update(provider=provider, model=model)
        fields: dict[str, Any] = {
            RECORD_OWNER_FIELD: tenant,
            "status": "queued",
            "provider": provider,
            "model": model,
            "priority": request.priority,
            "request": dumps(body),
            "metadata": dumps(request.metadata),
            "created_ms": now_ms(),
            "last_seq": 0,
        }
        if abandon_after_s is not None:
            fields["abandon_after_s"] = abandon_after_s
        if batch_id is not None:
            fields["batch_id"] = batch_id
        if holds_place:
            fields[ACTIVE_FIELD] = "1"
        return fields

    def create(
        self,
        gen_id: str,
        tenant: str,
        request: GenerationRequest,
        *,
        provider: str,
        model: str,
        abandon_after_s: int | None,
        batch_id: str | None = None,
        pipe: Any = None,
    ) -> None:
        """Write the record and event 1 (`status: queued`) in one transaction.

        With `pipe`, only queue the commands on it (a batch writes many
        records per round trip); the caller executes it.
        """
        fields = self.new_record(tenant, request, provider=provider, model=model,
                                 abandon_after_s=abandon_after_s, batch_id=batch_id)
        self.write_record(gen_id, fields, pipe)

    def write_record(self, gen_id: str, fields: dict[str, Any], pipe: Any = None) -> None:
        """Write a record built by `new_record`, its tombstone and event 1 (one MULTI).

        New generations from the API are written by the admission script
        instead (`spool.admission`), which writes the same keys.
        """
        k, retention = self.keys, self.log.retention
        own = pipe is None
        if own:
            pipe = self.client.pipeline(transaction=True)
        pipe.hset(k.record(gen_id), mapping=fields)
        pipe.expire(k.record(gen_id), retention.live_s)
        pipe.set(k.tombstone(gen_id), fields["tenant"],
                 ex=retention.live_s + retention.tombstone_s)
        if "abandon_after_s" in fields:
            # The web's abandon sweeper cancels it unless a reader pushes this back.
            deadline = int(fields["created_ms"]) + int(fields["abandon_after_s"]) * 1000
            pipe.zadd(k.abandon_index(), {gen_id: deadline})
            # Every key expires: the index outlives any member's generation.
            pipe.expire(k.abandon_index(), retention.live_s)
        self.log.queue_append(pipe, gen_id, STATUS, {"status": "queued"})
        if own:
            pipe.execute()

    def load(self, gen_id: str) -> dict[str, str] | None:
        """The raw record hash, or None when it does not exist (or expired)."""
        record: dict[str, str] = self.client.hgetall(self.keys.record(gen_id))  # type: ignore[assignment]
        return record or None

    def load_fields(self, gen_id: str, fields: Sequence[str]) -> dict[str, str] | None:
        """Only `fields` of the record (those set); None when there is no record.

        The record carries the whole request (a long prompt or a chat history
        can be hundreds of KB): a stream's opening needs four small fields,
        and a crowd of readers fetching the request each would spend the
        connection pool and the CPU on bytes nobody reads.
        """
        names = _with_owner(fields)
        values: list[str | None] = self.client.hmget(  # type: ignore[assignment]
            self.keys.record(gen_id), names)
        return _fields_of(names, values)

    def load_fields_and_page(self, gen_id: str, fields: Sequence[str], after: int,
                             limit: int) -> tuple[dict[str, str] | None, list[LogEntry]]:
        """`load_fields`, and the log's events after `after` (at most `limit`), in
        one round trip: a reader's opening needs both."""
        names = _with_owner(fields)
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.keys.record(gen_id), names)
        pipe.lrange(self.keys.log(gen_id), after, after + limit - 1)
        values, raw = pipe.execute()
        return _fields_of(names, values), [decode_entry(str(item)) for item in raw]

    def load_view(self, gen_id: str) -> tuple[dict[str, str] | None, dict[str, Any] | None,
                                              dict[str, str]]:
        """What `GET /v1/generations/{id}` shows, in one round trip: the record's
        view fields (None: no record), the view built from them, and the
        `readers` hash. The request (the prompt) is not read."""
        names = _with_owner(VIEW_FIELDS)
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.keys.record(gen_id), names)
        pipe.get(self.keys.text(gen_id))
        pipe.lrange(self.keys.tool_calls(gen_id), 0, -1)
        pipe.hgetall(self.keys.readers(gen_id))
        values, text, tool_calls, readers = pipe.execute()
        record = _fields_of(names, values)
        view = None if record is None else _view(gen_id, record, text, tool_calls)
        return record, view, readers

    def tombstone_tenant(self, gen_id: str) -> str | None:
        """Tenant of an expired generation whose tombstone still stands."""
        value: str | None = self.client.get(self.keys.tombstone(gen_id))  # type: ignore[assignment]
        return value

    def view(self, gen_id: str, record: dict[str, str]) -> dict[str, Any]:
        """The API.md shape of `GET /v1/generations/{id}` for a loaded `record`."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.text(gen_id))
        pipe.lrange(self.keys.tool_calls(gen_id), 0, -1)
        text, tool_calls = pipe.execute()
        return _view(gen_id, record, text, tool_calls)

    def request_cancel(self, gen_id: str, record: dict[str, str], reason: str = "user") -> str:
        """Ask for cancellation; returns the status to report.

        A queued generation is ended here (no worker holds it; the append
        script's guard makes a racing worker's writes no-ops). A running one
        is flagged and announced; its worker appends `cancelled` itself
        after closing the provider stream.
        """
        status = record.get("status", "")
        if status in TERMINAL_STATUSES:
            return status
        rec_key = self.keys.record(gen_id)
        self.client.hsetnx(rec_key, "cancel", reason)
        if status == "queued":
            seq = self.log.append(
                gen_id, CANCELLED, {"reason": reason}, fields=cancel_fields(reason)
            )
            if seq > 0:
                ended = {**record, "status": "cancelled", "ended": str(seq)}
                # No worker holds it: its place is given back here (a worker that
                # still dequeues it finds the log ended and releases it again).
                queue_release(self.client, self.keys, gen_id, record)
                on_generation_end(self.client, self.keys, gen_id, ended)
                return "cancelled"
        self.client.publish(self.keys.cancel_channel(), gen_id)
        current = self.client.hget(rec_key, "status")
        return str(current or status)


def cancel_fields(reason: str) -> dict[str, Any]:
    """Record fields written with a `cancelled` terminal event."""
    return {
        "status": "cancelled",
        "finish_reason": "abandoned" if reason == "abandoned" else "cancelled",
        "finished_ms": now_ms(),
    }


def _iso_field(record: dict[str, str], name: str) -> str | None:
    raw = record.get(name)
    return iso(int(raw)) if raw else None


def _empty_metrics() -> dict[str, Any]:
    return {"queue_ms": None, "ttft_ms": None, "duration_ms": None, "tokens_per_second": None}


def _view(gen_id: str, record: dict[str, str], text: str | None,
          tool_calls: list[str]) -> dict[str, Any]:
    calls = [orjson.loads(raw) for raw in tool_calls]
    view: dict[str, Any] = {
        "id": gen_id,
        "object": "generation",
        "status": record.get("status"),
        "provider": record.get("provider"),
        "model": record.get("model"),
        "text": text or "",
        "tool_calls": [
            {"id": c["id"], "name": c["name"], "arguments": c["arguments"]} for c in calls
        ],
        "finish_reason": record.get("finish_reason"),
        "usage": _json_field(record, "usage"),
        "error": _json_field(record, "error"),
        "metrics": _json_field(record, "metrics") or _empty_metrics(),
        "last_event_id": int(record.get("last_seq", 0)),
        "created_at": _iso_field(record, "created_ms"),
        "started_at": _iso_field(record, "started_ms"),
        "finished_at": _iso_field(record, "finished_ms"),
        "metadata": _json_field(record, "metadata") or {},
    }
    if "parsed" in record:
        view["parsed"] = _json_field(record, "parsed")
    return view


def _with_owner(fields: Sequence[str]) -> list[str]:
    return [RECORD_OWNER_FIELD, *(f for f in fields if f != RECORD_OWNER_FIELD)]


def _fields_of(names: list[str], values: list[str | None]) -> dict[str, str] | None:
    if values[0] is None:  # every record has its owner: no owner, no record
        return None
    return {name: value for name, value in zip(names, values, strict=True) if value is not None}
