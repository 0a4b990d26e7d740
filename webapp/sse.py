"""A pure Server-Sent Events encoder (no Flask), tested byte for byte.

Frames follow the WHATWG EventSource format: `field: value` lines ended by
`\n`, an empty line ending each event. Data with line breaks becomes
several `data:` lines, which the browser joins back with `\n`.
"""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
PING = b": ping\n\n"


def retry(milliseconds: int) -> bytes:
    """The reconnection delay line that opens every stream."""
    return f"retry: {int(milliseconds)}\n\n".encode()


def comment(text: str) -> bytes:
    """A comment line (ignored by clients, keeps proxies from timing out)."""
    return b"".join(f": {line}\n".encode() for line in _LINE_BREAK.split(text)) + b"\n"


def _field_safe(value: str, name: str) -> str:
    if _LINE_BREAK.search(value) or "\x00" in value:
        raise ValueError(f"SSE {name} must not contain a line break or NUL")
    return value


def event(data: str, *, event_id: int | str | None = None, name: str | None = None) -> bytes:
    """One complete event frame."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {_field_safe(str(event_id), 'id')}\n")
    if name is not None:
        lines.append(f"event: {_field_safe(name, 'event')}\n")
    lines.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    lines.append("\n")
    return "".join(lines).encode("utf-8")


def entry_frame(seq: bytes, name: bytes, data: bytes) -> bytes:
    """Frame a stored log entry without decoding it (the relay's hot path).

    Log entries hold single-line JSON, so no line splitting is needed.
    """
    return b"id: " + seq + b"\nevent: " + name + b"\ndata: " + data + b"\n\n"


def http_chunk(data: bytes) -> bytes:
    """`data` as one HTTP/1.1 chunk, as gunicorn frames a chunked body's writes
    (for the bytes Spool writes to a stream's socket itself)."""
    return b"%X\r\n%b\r\n" % (len(data), data)
