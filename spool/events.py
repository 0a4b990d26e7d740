"""Event names and the log entry codec.

A log entry is `"<seq> <event> <json>"`: the relay turns it into an SSE
frame without parsing the JSON, and the same string is what the append
script publishes, so readers of the log and of pub/sub see identical bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

STATUS = "status"
DELTA = "delta"
TOOL_CALL = "tool_call"
NOTICE = "notice"
DONE = "done"
ERROR = "error"
CANCELLED = "cancelled"

EVENT_NAMES = frozenset({STATUS, DELTA, TOOL_CALL, NOTICE, DONE, ERROR, CANCELLED})
TERMINAL_EVENTS = frozenset({DONE, ERROR, CANCELLED})

# Record status a terminal event leaves behind.
TERMINAL_STATUS = {DONE: "completed", ERROR: "failed", CANCELLED: "cancelled"}
TERMINAL_STATUSES = frozenset(TERMINAL_STATUS.values())


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event as stored: its sequence number, name and JSON text."""

    seq: int
    event: str
    data: str

    @property
    def terminal(self) -> bool:
        """True for the event that ends a generation's log."""
        return self.event in TERMINAL_EVENTS


def encode_entry(seq: int, event: str, data: str) -> str:
    """Encode an entry (the append script builds the same string in Lua)."""
    return f"{seq} {event} {data}"


def decode_entry(raw: str) -> LogEntry:
    """Decode a log entry; raises ValueError on anything malformed."""
    seq_text, event, data = raw.split(" ", 2)
    return LogEntry(int(seq_text), event, data)
