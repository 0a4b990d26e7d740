"""Every Redis key Spool uses, built in one place.

All keys of one generation share the `{<generation id>}` hash tag, so on a
Redis Cluster they live on one slot and the atomic append (a Lua script
touching several of them) is legal there. Cross-generation indexes
(tenant limits, the running set) are separate keys used outside scripts.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

QUEUE_INTERACTIVE = "interactive"
QUEUE_BATCH = "batch"
PRIORITIES = (QUEUE_INTERACTIVE, QUEUE_BATCH)


DIGEST_CACHE_SIZE = 4096  # tenants, credentials and recent idempotency keys


@functools.lru_cache(maxsize=DIGEST_CACHE_SIZE)
def _digest(value: str) -> str:
    """A short stable digest, so user-chosen strings never become raw key text.

    Cached: the same tenant and credential are digested on every request."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Keys:
    """Key builder for one namespace (`SPOOL_NAMESPACE`, default `spool`)."""

    namespace: str = "spool"

    # -- one generation (all share the hash tag) -------------------------------
    def _gen(self, gen_id: str, part: str) -> str:
        return f"{self.namespace}:gen:{{{gen_id}}}:{part}"

    def record(self, gen_id: str) -> str:
        """Hash: status, tenant, request, timestamps, last_seq, terminal fields."""
        return self._gen(gen_id, "rec")

    def log(self, gen_id: str) -> str:
        """List: entry N (0-based) is event seq N+1, encoded by `spool.events`."""
        return self._gen(gen_id, "log")

    def text(self, gen_id: str) -> str:
        """String: all delta text so far (what GET returns as `text`)."""
        return self._gen(gen_id, "text")

    def tool_calls(self, gen_id: str) -> str:
        """List: the JSON of each `tool_call` event, in order."""
        return self._gen(gen_id, "tools")

    def channel(self, gen_id: str) -> str:
        """Pub/sub channel carrying every appended entry."""
        return self._gen(gen_id, "ch")

    def tombstone(self, gen_id: str) -> str:
        """String (tenant): outlives the record so an expired id answers 410."""
        return self._gen(gen_id, "tomb")

    def lease(self, gen_id: str) -> str:
        """String (worker id) with a short TTL while a worker runs the generation."""
        return self._gen(gen_id, "lease")

    def readers(self, gen_id: str) -> str:
        """Hash: web process id -> reader count, refreshed while readers are attached."""
        return self._gen(gen_id, "readers")

    def generation_keys(self, gen_id: str) -> list[str]:
        """The keys whose lifetime is the generation's retention."""
        return [self.record(gen_id), self.log(gen_id), self.text(gen_id), self.tool_calls(gen_id)]

    def append_keys(self, gen_id: str) -> list[str]:
        """The append script's six keys, in its order (record, log, text,
        tool calls, tombstone, channel)."""
        return [self.record(gen_id), self.log(gen_id), self.text(gen_id),
                self.tool_calls(gen_id), self.tombstone(gen_id), self.channel(gen_id)]

    def append_key_templates(self) -> list[str]:
        """`append_keys` as (prefix, suffix) pairs, flattened: key i of a
        generation is prefix_i + id + suffix_i. The batched append script
        builds the keys from these, so the worker sends an id, not six keys."""
        marker = "\x00"
        templates: list[str] = []
        for key in self.append_keys(marker):
            prefix, suffix = key.split(marker)
            templates.extend((prefix, suffix))
        return templates

    # -- indexes across generations ------------------------------------------
    # A tenant's rate and active keys share a `{<tenant digest>}` hash tag, so
    # on a Redis Cluster the admission script (rate, active place) runs on one
    # slot. Idempotency keys carry no tag (a user string never shapes one).
    def _tenant(self, tenant: str) -> str:
        return "{" + _digest(tenant) + "}"

    def idempotency(self, tenant: str, key: str) -> str:
        """String: generation or batch id for (tenant, idempotency key), 24 h."""
        return f"{self.namespace}:idem:{_digest(tenant)}:{_digest(key)}"

    def ai_sdk_chat(self, tenant: str, chat_id: str) -> str:
        """String: the latest generation id of one AI SDK chat (the useChat `id`) of a tenant.

        Given the generation's live TTL, so it never outlives what it points to by long.
        """
        return f"{self.namespace}:aichat:{_digest(tenant)}:{_digest(chat_id)}"

    def rate(self, tenant: str, credential: str, window: int) -> str:
        """Counter of requests by one credential (of `tenant`) in one rate window."""
        return f"{self.namespace}:rate:{self._tenant(tenant)}:{_digest(credential)}:{window}"

    def active(self, tenant: str) -> str:
        """Sorted set of a tenant's queued + running generation ids (score: admitted ms).

        Admission adds, whoever ends a generation removes: its size is the
        tenant's active count, read in O(1).
        """
        return f"{self.namespace}:active:{self._tenant(tenant)}"

    def active_repair(self, tenant: str) -> str:
        """String with a short TTL: the tenant's active set was checked for leaks lately."""
        return f"{self.namespace}:active:{self._tenant(tenant)}:repair"

    def running(self) -> str:
        """Sorted set: in-progress generation id -> lease deadline (ms)."""
        return f"{self.namespace}:running"

    def workers(self) -> str:
        """Sorted set: live worker id -> last heartbeat (s)."""
        return f"{self.namespace}:workers"

    def write_probe(self) -> str:
        """String /readyz writes (with a short TTL) to learn whether Redis accepts writes."""
        return f"{self.namespace}:readyz:probe"

    def abandon_index(self) -> str:
        """Sorted set: generation id -> when (ms) it is abandoned unless a reader attaches."""
        return f"{self.namespace}:abandon"

    def metric_counters(self) -> str:
        """Hash: cluster-wide counters and histogram buckets (field = series)."""
        return f"{self.namespace}:metrics:counters"

    def metric_gauges(self) -> str:
        """Hash: per-process gauge snapshots (field = process id, JSON value)."""
        return f"{self.namespace}:metrics:gauges"

    def cancel_channel(self) -> str:
        """Pub/sub channel on which cancel requests are announced to workers."""
        return f"{self.namespace}:control"

    def queue_name(self, priority: str) -> str:
        """RQ queue name for a priority (RQ adds its own `rq:queue:` prefix)."""
        return f"{self.namespace}-{priority}"

    # -- batches ---------------------------------------------------------------
    def _batch(self, batch_id: str, part: str) -> str:
        return f"{self.namespace}:batch:{{{batch_id}}}:{part}"

    def batch_record(self, batch_id: str) -> str:
        """Hash: status, counters, tenant, timestamps."""
        return self._batch(batch_id, "rec")

    def batch_rows(self, batch_id: str) -> str:
        """List: generation id of each row, in row order."""
        return self._batch(batch_id, "rows")

    def batch_log(self, batch_id: str) -> str:
        """List: the batch's progress event log."""
        return self._batch(batch_id, "log")

    def batch_channel(self, batch_id: str) -> str:
        """Pub/sub channel of the batch's progress events."""
        return self._batch(batch_id, "ch")

    def batch_pending(self, batch_id: str) -> str:
        """List: generation ids of rows not yet handed to the RQ batch queue."""
        return self._batch(batch_id, "pending")

    def batch_dispatched(self, batch_id: str) -> str:
        """Sorted set: generation id -> ms when it was put on the RQ queue (until it ends)."""
        return self._batch(batch_id, "dispatched")

    def batch_ended(self, batch_id: str) -> str:
        """Set: generation ids already counted as ended (makes row-end accounting idempotent)."""
        return self._batch(batch_id, "ended")

    def batch_finished(self, batch_id: str) -> str:
        """List: generation ids in the order they ended (the results file's order)."""
        return self._batch(batch_id, "finished")

    def batch_custom_ids(self, batch_id: str) -> str:
        """Hash: generation id -> the row's `custom_id`."""
        return self._batch(batch_id, "custom")

    def batch_keys(self, batch_id: str) -> list[str]:
        """Every key of one batch (they share its lifetime)."""
        return [
            self.batch_record(batch_id), self.batch_rows(batch_id), self.batch_log(batch_id),
            self.batch_pending(batch_id), self.batch_dispatched(batch_id),
            self.batch_ended(batch_id), self.batch_finished(batch_id),
            self.batch_custom_ids(batch_id),
        ]

    def batches_active(self) -> str:
        """List: batches with rows still pending, rotated by the feeder (round robin).

        Shares a hash tag with `batches_open`: a new batch joins both in one MULTI.
        Holds only batches still feeding (no TTL; an empty list is no key).
        """
        return f"{self.namespace}:{{{self.namespace}:batches}}:active"

    def batches_open(self) -> str:
        """Set: batches not yet ended, which the sweeper checks."""
        return f"{self.namespace}:{{{self.namespace}:batches}}:open"

    def batch_feed_lock(self) -> str:
        """String with a short TTL: held by the one process feeding the RQ batch queue."""
        return f"{self.namespace}:batches:feedlock"

    def batch_sweep_lock(self) -> str:
        """String with a short TTL: held by the one process sweeping open batches."""
        return f"{self.namespace}:batches:sweeplock"
