"""The event log: one atomic append, paged reads.

An append is one Lua script: take the next sequence number, push the entry,
append delta text, record tool calls, update the record, set TTLs, publish.
Because it refuses to write after a terminal event, every log ends with
exactly one terminal event even when a worker, a canceller and a lease
settler race to end the same generation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from redis.cluster import ClusterPipeline

from spool.appendscript import APPEND_MANY_LUA, APPEND_ONE_LUA
from spool.connection import check_rq_url, is_cluster, publish_command
from spool.events import DELTA, TERMINAL_EVENTS, TOOL_CALL, LogEntry, decode_entry
from spool.keys import Keys
from spool.settings import Settings

READ_PAGE = 500  # entries per LRANGE when replaying a backlog

APPENDED_MISSING = -1  # the record does not exist (expired or never created)
APPENDED_AFTER_END = -2  # the log already has its terminal event
APPENDED_TOO_EARLY = -3  # this writer's previous append has not landed: resend both, in order

_APPEND_LUA = APPEND_ONE_LUA  # kept under its old name for callers that pack it


@dataclass(frozen=True)
class Retention:
    """TTLs: while live, after the terminal event, and for the 410 tombstone."""

    live_s: int
    final_s: int
    tombstone_s: int

    @classmethod
    def from_settings(cls, retention_s: int, job_timeout_s: int, tombstone_s: int) -> Retention:
        """Live keys outlast the longest job plus retention, so a lost worker
        cannot leave keys behind forever."""
        live = job_timeout_s + retention_s
        return cls(live_s=live, final_s=retention_s, tombstone_s=retention_s + tombstone_s)


def dumps(data: Any) -> str:
    """Compact JSON (orjson) as text."""
    return orjson.dumps(data).decode("utf-8")


class EventLog:
    """Append to and read generation logs."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        retention: Retention,
        *,
        publish_command: str = "PUBLISH",
    ) -> None:
        self.client = client
        self.keys = keys
        self.retention = retention
        self.publish_command = publish_command
        self._script = client.register_script(_APPEND_LUA)
        self._many = client.register_script(APPEND_MANY_LUA)
        self._batch_constants: list[Any] = [
            retention.live_s, retention.final_s, retention.tombstone_s, publish_command,
            *keys.append_key_templates()]

    @property
    def many_script(self) -> Any:
        """The batched append script: many events (of any generations) per call."""
        return self._many

    @property
    def script(self) -> Any:
        """The registered append script (`.sha`, `.script`) for raw pipelining."""
        return self._script

    def _call(
        self,
        pipe: Any,
        gen_id: str,
        event: str,
        data: Mapping[str, Any] | str,
        fields: Mapping[str, Any] | None,
    ) -> Any:
        keys, args = self.arguments(gen_id, event, data, fields)
        if pipe is not self.client and isinstance(pipe, ClusterPipeline):
            # redis-py blocks EVALSHA in Cluster pipelines (it cannot load a
            # missing script mid-pipeline); EVAL carries the script itself,
            # so a failed-over node with an empty script cache still works.
            return pipe.execute_command("EVAL", _APPEND_LUA, len(keys), *keys, *args)
        return self._script(keys=keys, args=args, client=pipe)

    def arguments(
        self,
        gen_id: str,
        event: str,
        data: Mapping[str, Any] | str,
        fields: Mapping[str, Any] | None = None,
        writer: tuple[str, int] | None = None,
        keys: list[str] | None = None,
    ) -> tuple[list[str], list[Any]]:
        """The append script's KEYS and ARGV for one event (for callers that pack
        many appends themselves, like the worker's batched writer).

        `writer` = (writer id, increasing number per generation) makes the
        append idempotent: resending it after a lost reply returns the seq it
        got the first time instead of appending it twice. `keys`: the
        generation's `event_keys`, if the caller keeps them.
        """
        if event == DELTA and not fields and writer is not None and isinstance(data, dict) \
                and len(data) == 1 and isinstance(data.get("text"), str):
            return keys or self.event_keys(gen_id), self._delta_arguments(data["text"], writer)
        payload = data if isinstance(data, str) else dumps(data)
        text = ""
        if event == DELTA:
            text = data["text"] if not isinstance(data, str) else orjson.loads(data)["text"]
        args: list[Any] = [
            event,
            payload,
            text,
            "1" if event in TERMINAL_EVENTS else "0",
            self.retention.live_s,
            self.retention.final_s,
            self.retention.tombstone_s,
            self.publish_command,
            *(writer if writer is not None else ("", "")),
        ]
        updates = dict(fields or {})
        if event in (DELTA, TOOL_CALL):
            updates["output"] = "1"
        for name, value in updates.items():
            args.extend((name, value if isinstance(value, str) else dumps(value)))
        return keys or self.event_keys(gen_id), args

    def event_keys(self, gen_id: str) -> list[str]:
        """The append script's six KEYS for `gen_id`."""
        return self.keys.append_keys(gen_id)

    def _delta_arguments(self, text: str, writer: tuple[str, int]) -> list[Any]:
        """`arguments` for the commonest event, a plain text delta (once per token)."""
        retention = self.retention
        return [DELTA, orjson.dumps({"text": text}).decode(), text, "0", retention.live_s,
                retention.final_s, retention.tombstone_s, self.publish_command,
                writer[0], writer[1], "output", "1"]

    @property
    def batch_constants(self) -> list[Any]:
        """The batched script's arguments before its first event (appendscript.py):
        sent once per call, not once per event."""
        return self._batch_constants

    def batch_arguments(
        self,
        gen_id: str,
        event: str,
        data: Any,
        fields: Mapping[str, Any] | None,
        writer: tuple[str, int],
    ) -> list[Any]:
        """One event in the batched script's compact form: its argument count,
        then id, writer id and number, event, data, text, terminal flag and
        record fields. About a quarter of the bytes of `arguments` (no keys,
        no per-call constants): the worker sends this for every token."""
        if isinstance(data, dict):
            text = data.get("text", "") if event == DELTA else ""
            payload: bytes | str = orjson.dumps(data)
        else:
            text = orjson.loads(data)["text"] if event == DELTA else ""
            payload = data
        args: list[Any] = [7, gen_id, writer[0], writer[1], event, payload, text,
                           "1" if event in TERMINAL_EVENTS else "0"]
        if fields:
            for name, value in fields.items():
                args.extend((name, value if isinstance(value, str) else dumps(value)))
            args[0] = len(args) - 1
        return args

    def expand_batch_arguments(self, compact: list[Any]) -> tuple[list[str], list[Any]]:
        """`batch_arguments`' event as the single append script's KEYS and ARGV
        (the Cluster path, which must declare keys)."""
        _, gen_id, writer_id, number, event, payload, text, terminal, *fields = compact
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8")
        retention = self.retention
        args: list[Any] = [event, payload, text, terminal, retention.live_s, retention.final_s,
                           retention.tombstone_s, self.publish_command, writer_id, number,
                           *fields]
        if event in (DELTA, TOOL_CALL):
            args.extend(("output", "1"))
        return self.event_keys(gen_id), args

    def append(
        self,
        gen_id: str,
        event: str,
        data: Mapping[str, Any] | str,
        fields: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one event; returns its seq, or APPENDED_MISSING / APPENDED_AFTER_END."""
        return int(self._call(self.client, gen_id, event, data, fields))

    def queue_append(
        self,
        pipe: Any,
        gen_id: str,
        event: str,
        data: Mapping[str, Any] | str,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue an append on `pipe`, so many generations share one round trip."""
        self._call(pipe, gen_id, event, data, fields)

    def read(self, gen_id: str, after: int = 0, limit: int = READ_PAGE) -> list[LogEntry]:
        """Entries with seq > `after`, at most `limit` (seq N is list index N-1)."""
        raw = self.client.lrange(self.keys.log(gen_id), after, after + limit - 1)
        return [decode_entry(str(item)) for item in raw]

    def read_after(self, gen_id: str, after: int,
                   limit: int = READ_PAGE) -> list[LogEntry] | None:
        """Entries with seq > `after` (at most `limit`), or None if the log is gone.

        One command where `read` and an EXISTS would be two: for `after` >= 1
        the range starts at entry `after` itself, which the log holds while it
        exists (entries are only appended, and the whole log expires at
        once), so an empty reply means the log is gone, and a reply of that
        entry alone means nothing new. `after` must not be past the log's end.
        """
        first = max(after - 1, 0)
        raw = self.client.lrange(self.keys.log(gen_id), first, after + limit - 1)
        if not raw:
            return None  # with after == 0: a live log always holds event 1
        return [decode_entry(str(item)) for item in raw[after - first:]]

    def read_all(self, gen_id: str, after: int = 0) -> list[LogEntry]:
        """Every entry after `after`, paged."""
        entries: list[LogEntry] = []
        while True:
            page = self.read(gen_id, after, READ_PAGE)
            entries.extend(page)
            if len(page) < READ_PAGE:
                return entries
            after = page[-1].seq


def open_event_log(settings: Settings, client: Any) -> EventLog:
    """The event log on `client` with the settings' namespace and retention.

    Refuses a Cluster that would also carry RQ, and publishes with SPUBLISH
    where the client is a Redis 7+ Cluster (web and worker must agree).
    """
    check_rq_url(settings.redis_url, settings.rq_redis_url, is_cluster(client))
    retention = Retention.from_settings(
        settings.retention_s, settings.job_timeout_s, settings.tombstone_s
    )
    return EventLog(client, Keys(settings.namespace), retention,
                    publish_command=publish_command(client))
