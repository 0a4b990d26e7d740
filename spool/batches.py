"""Batches: a record with counters, row lists, and a progress log.

A batch's rows are ordinary generations (their records carry `batch_id`).
They wait in the batch's `pending` list until the feeder hands them to the
RQ batch queue, then sit in `dispatched` until they end. Whoever ends a row
(the worker, a cancel, the lease settler, the sweeper) calls
`on_generation_end`: one Lua script, idempotent per row through a set, that
bumps a counter, appends a `progress` event to the batch's log (same entry
codec as generation logs, so the SSE relay logic carries over) and, on the
last row, the batch's terminal event. All keys of one batch share the
`{batch_id}` hash tag, so the script is legal on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import redis

from spool.clock import iso, now_ms
from spool.events import CANCELLED, DONE, LogEntry, decode_entry
from spool.keys import Keys
from spool.log import READ_PAGE, Retention, dumps

if TYPE_CHECKING:
    from spool.generations import Generations

PROGRESS = "progress"
BATCH_TERMINAL_EVENTS = frozenset({DONE, CANCELLED})
COUNTERS = ("completed", "failed", "cancelled")
# Generation status -> the batch counter it bumps (anything else, e.g. an
# expired record, counts as failed).
STATUS_COUNTER = {"completed": "completed", "failed": "failed", "cancelled": "cancelled"}
DRAIN_PAGE = 500  # pending rows dropped per round trip when a batch is cancelled

_ROW_END_LUA = """
-- KEYS: 1 record, 2 ended set, 3 finished, 4 log, 5 channel, 6 dispatched,
--       7 rows, 8 pending, 9 custom ids
-- ARGV: 1 generation id, 2 counter field, 3 now (ms)
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
-- A row counted earlier (e.g. cancelled while pending) may be fed later anyway.
redis.call('ZREM', KEYS[6], ARGV[1])
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return {0, 0} end
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
local r = redis.call('HMGET', KEYS[1], 'total', 'completed', 'failed', 'cancelled',
                      'cancel', 'status', 'live_s', 'final_s')
local total = tonumber(r[1]) or 0
local completed, failed, cancelled = tonumber(r[2]) or 0, tonumber(r[3]) or 0, tonumber(r[4]) or 0
local counts = '"completed":' .. completed .. ',"failed":' .. failed ..
               ',"cancelled":' .. cancelled .. ',"total":' .. total
local seq = redis.call('HINCRBY', KEYS[1], 'last_seq', 1)
local entry = seq .. ' progress {' .. counts .. '}'
redis.call('RPUSH', KEYS[4], entry)
redis.call('PUBLISH', KEYS[5], entry)
local ttl, ended = r[7], 0
if completed + failed + cancelled >= total then
  local name, status, head = 'done', 'completed', ''
  if r[5] then
    name, status, head = 'cancelled', 'cancelled', '"reason":"' .. r[5] .. '",'
  end
  seq = redis.call('HINCRBY', KEYS[1], 'last_seq', 1)
  entry = seq .. ' ' .. name .. ' {' .. head .. '"status":"' .. status .. '",' .. counts .. '}'
  redis.call('RPUSH', KEYS[4], entry)
  redis.call('PUBLISH', KEYS[5], entry)
  redis.call('HSET', KEYS[1], 'status', status, 'finished_ms', ARGV[3], 'ended', seq)
  ttl, ended = r[8], 1
elseif r[6] == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'in_progress', 'started_ms', ARGV[3])
end
for i = 1, 9 do
  if i ~= 5 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return {seq, ended}
"""

_TAKE_ROW_LUA = """
-- KEYS: 1 record, 2 pending, 3 dispatched; ARGV: 1 now (ms)
-- Returns the next row's generation id, or false when the batch has nothing
-- left to feed (empty, cancelled, ended or expired).
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local r = redis.call('HMGET', KEYS[1], 'cancel', 'status', 'ended')
if r[1] or r[3] then return false end
local gen = redis.call('LPOP', KEYS[2])
if not gen then return false end
redis.call('ZADD', KEYS[3], ARGV[1], gen)
if r[2] == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'in_progress', 'started_ms', ARGV[1])
end
return gen
"""


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a new batch: its generation and its caller-chosen id."""

    gen_id: str
    custom_id: str


def counter_for(status: str | None) -> str:
    """The batch counter a generation's final status bumps."""
    return STATUS_COUNTER.get(status or "", "failed")


def _row_end_keys(keys: Keys, batch_id: str) -> list[str]:
    return [
        keys.batch_record(batch_id), keys.batch_ended(batch_id), keys.batch_finished(batch_id),
        keys.batch_log(batch_id), keys.batch_channel(batch_id), keys.batch_dispatched(batch_id),
        keys.batch_rows(batch_id), keys.batch_pending(batch_id), keys.batch_custom_ids(batch_id),
    ]


def account_row_end(client: Any, keys: Keys, batch_id: str, gen_id: str, counter: str) -> Any:
    """Count one row as ended (`client` may be a pipeline). Returns [seq, ended]:
    the new event's seq (0 if the row was already counted, -1 if the batch is
    gone) and 1 if this row ended the batch."""
    # register_script: EVALSHA (no script text per call), also on a pipeline.
    script = client.register_script(_ROW_END_LUA)
    return script(keys=_row_end_keys(keys, batch_id), args=[gen_id, counter, now_ms()])


def on_generation_end(
    client: redis.Redis, keys: Keys, gen_id: str, record: dict[str, str] | None
) -> int:
    """Account a generation's end in its batch, if it belongs to one.

    Call it after the generation's terminal event was written, from
    wherever that happened. Safe to call twice, or for a row whose end was
    already counted, or for a generation outside any batch (no Redis call).
    """
    if not record or not record.get("batch_id") or "ended" not in record:
        return 0
    batch_id = record["batch_id"]
    seq, ended = account_row_end(client, keys, batch_id, gen_id,
                                 counter_for(record.get("status")))
    if ended:
        client.srem(keys.batches_open(), batch_id)
    return int(seq)


class BatchStore:
    """Batch records, row lists and progress logs in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys, retention: Retention) -> None:
        self.client = client
        self.keys = keys
        self.retention = retention
        self._take = client.register_script(_TAKE_ROW_LUA)

    # -- creation -------------------------------------------------------------
    def queue_rows(self, pipe: Any, batch_id: str, rows: Sequence[Row]) -> None:
        """Queue one chunk of rows on `pipe`: row order, custom ids, pending list."""
        k = self.keys
        ids = [row.gen_id for row in rows]
        pipe.rpush(k.batch_rows(batch_id), *ids)
        pipe.rpush(k.batch_pending(batch_id), *ids)
        pipe.hset(k.batch_custom_ids(batch_id),
                  mapping={row.gen_id: row.custom_id for row in rows})
        for key in (k.batch_rows(batch_id), k.batch_pending(batch_id),
                    k.batch_custom_ids(batch_id)):
            pipe.expire(key, self.retention.live_s)

    def open(self, batch_id: str, tenant: str, total: int, metadata: dict[str, str]) -> None:
        """Write the record and progress event 1, and offer the batch to the feeder.

        Called after every row was queued, so the feeder never sees a half-made batch.
        """
        k, created = self.keys, now_ms()
        fields: dict[str, Any] = {
            "tenant": tenant, "status": "queued", "total": total,
            "completed": 0, "failed": 0, "cancelled": 0,
            "metadata": dumps(metadata), "created_ms": created, "last_seq": 1,
            "live_s": self.retention.live_s, "final_s": self.retention.final_s,
        }
        entry = f"1 {PROGRESS} " + dumps(progress_data(fields))
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(k.batch_record(batch_id), mapping=fields)  # type: ignore[arg-type]
        pipe.rpush(k.batch_log(batch_id), entry)
        for key in (k.batch_record(batch_id), k.batch_log(batch_id)):
            pipe.expire(key, self.retention.live_s)
        pipe.publish(k.batch_channel(batch_id), entry)
        pipe.execute()
        pipe = self.client.pipeline(transaction=True)  # never open without being fed
        pipe.sadd(k.batches_open(), batch_id)
        pipe.rpush(k.batches_active(), batch_id)
        for key in (k.batches_open(), k.batches_active()):
            pipe.expire(key, self.retention.live_s)  # renewed by the workers' sweeper
        pipe.execute()

    # -- reading --------------------------------------------------------------
    def load(self, batch_id: str) -> dict[str, str] | None:
        """The raw record hash, or None."""
        record: dict[str, str] = self.client.hgetall(self.keys.batch_record(batch_id))  # type: ignore[assignment]
        return record or None

    def read_progress(self, batch_id: str, after: int = 0,
                      limit: int = READ_PAGE) -> list[LogEntry]:
        """Progress log entries with seq > `after` (seq N is list index N-1)."""
        raw = self.client.lrange(self.keys.batch_log(batch_id), after, after + limit - 1)
        return [decode_entry(str(item)) for item in raw]

    def finished_page(self, batch_id: str, start: int, count: int) -> list[str]:
        """Generation ids of ended rows, in the order they ended."""
        found: list[str] = self.client.lrange(  # type: ignore[assignment]
            self.keys.batch_finished(batch_id), start, start + count - 1)
        return found

    def custom_ids(self, batch_id: str, gen_ids: Sequence[str]) -> list[str | None]:
        """The `custom_id` of each generation."""
        if not gen_ids:
            return []
        found: list[str | None] = self.client.hmget(  # type: ignore[assignment]
            self.keys.batch_custom_ids(batch_id), list(gen_ids))
        return found

    def dispatched(self, batch_id: str) -> list[tuple[str, float]]:
        """Rows handed to RQ and not yet ended, with the time (ms) they were handed over."""
        found: list[tuple[str, float]] = self.client.zrange(  # type: ignore[assignment]
            self.keys.batch_dispatched(batch_id), 0, -1, withscores=True)
        return found

    # -- feeding and cancelling ------------------------------------------------
    def take_row(self, batch_id: str) -> str | None:
        """Move the batch's next pending row to `dispatched`; None when none is left."""
        k = self.keys
        found = self._take(keys=[k.batch_record(batch_id), k.batch_pending(batch_id),
                                 k.batch_dispatched(batch_id)], args=[now_ms()])
        return str(found) if found else None

    def redispatched(self, batch_id: str, gen_id: str) -> None:
        """Note that a row was put on the RQ queue again (restarts its clock)."""
        self.client.zadd(self.keys.batch_dispatched(batch_id), {gen_id: now_ms()}, xx=True)

    def flag_cancel(self, batch_id: str, reason: str = "user") -> None:
        """Mark the batch cancelled: the feeder stops taking its rows."""
        self.client.hsetnx(self.keys.batch_record(batch_id), "cancel", reason)

    def drain_pending(self, batch_id: str) -> list[str]:
        """Pop up to DRAIN_PAGE pending rows (they will never be dispatched)."""
        found = self.client.lpop(self.keys.batch_pending(batch_id), DRAIN_PAGE)
        return list(found or [])  # type: ignore[arg-type]

    def retire(self, batch_id: str) -> None:
        """Stop offering the batch to the feeder."""
        self.client.lrem(self.keys.batches_active(), 0, batch_id)


def progress_data(record: dict[str, Any]) -> dict[str, int]:
    """A `progress` event's data from a record's counters."""
    data = {name: int(record.get(name) or 0) for name in COUNTERS}
    data["total"] = int(record.get("total") or 0)
    return data


def view(batch_id: str, record: dict[str, str]) -> dict[str, Any]:
    """The API.md shape of `GET /v1/batches/{id}`."""
    counts = progress_data(record)
    finished = record.get("finished_ms")
    return {
        "id": batch_id,
        "object": "batch",
        "status": record.get("status"),
        "total": counts["total"],
        "completed": counts["completed"],
        "failed": counts["failed"],
        "cancelled": counts["cancelled"],
        "created_at": iso(int(record["created_ms"])) if record.get("created_ms") else None,
        "finished_at": iso(int(finished)) if finished else None,
        "metadata": orjson.loads(record["metadata"]) if record.get("metadata") else {},
    }


def cancel_batch(store: BatchStore, generations: Generations, batch_id: str) -> None:
    """Drop the batch's queued rows (never started) and cancel its dispatched ones.

    The batch ends with its `cancelled` event once the last running row has
    stopped (its worker accounts it), usually within a second.
    """
    from spool.generations import cancel_fields  # generations imports this module

    keys = store.keys
    store.flag_cancel(batch_id)
    store.retire(batch_id)
    while ids := store.drain_pending(batch_id):
        pipe = store.client.pipeline(transaction=False)
        for gen_id in ids:
            pipe.hsetnx(keys.record(gen_id), "cancel", "user")
            generations.log.queue_append(pipe, gen_id, CANCELLED, {"reason": "user"},
                                         cancel_fields("user"))
            account_row_end(pipe, keys, batch_id, gen_id, "cancelled")
        pipe.execute()
    for gen_id, _ in store.dispatched(batch_id):
        record = generations.load(gen_id)
        if record is None:
            account_row_end(store.client, keys, batch_id, gen_id, "failed")
        elif "ended" in record:
            on_generation_end(store.client, keys, gen_id, record)
        else:
            generations.request_cancel(gen_id, record)  # accounts a queued row itself
    if store.client.hexists(keys.batch_record(batch_id), "ended"):
        store.client.srem(keys.batches_open(), batch_id)
