"""A small, strict SSE client for tests: parses exactly what the server sent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import requests


@dataclass
class Event:
    id: int | None
    event: str
    data: Any


@dataclass
class Parser:
    """Incremental parser of `text/event-stream` bytes (WHATWG rules, LF only)."""

    buffer: bytes = b""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    _fields: dict[str, str] = field(default_factory=dict)
    _data: list[str] = field(default_factory=list)

    def feed(self, chunk: bytes) -> list[Event]:
        self.buffer += chunk
        events = []
        while b"\n" in self.buffer:
            line_bytes, self.buffer = self.buffer.split(b"\n", 1)
            line = line_bytes.decode("utf-8")
            if line == "":
                if self._data or self._fields:
                    events.append(Event(
                        int(self._fields["id"]) if "id" in self._fields else None,
                        self._fields.get("event", "message"),
                        json.loads("\n".join(self._data)) if self._data else None,
                    ))
                self._fields, self._data = {}, []
            elif line.startswith(":"):
                self.comments.append(line[1:].strip())
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    self._data.append(value)
                elif name == "retry":
                    self.retry = int(value)
                else:
                    self._fields[name] = value
        return events


@dataclass
class StreamResult:
    status: int
    events: list[Event]
    retry: int | None
    comments: list[str]
    headers: dict[str, str]
    complete: bool  # the server ended the response (vs. we stopped reading)


def read_stream(url: str, headers: dict[str, str] | None = None,
                max_events: int | None = None, timeout: float = 60.0) -> StreamResult:
    """GET an SSE URL; stop after `max_events` events (then drop the connection)."""
    parser = Parser()
    events: list[Event] = []
    with requests.get(url, headers=headers or {}, stream=True, timeout=timeout) as resp:
        if resp.status_code != 200:
            headers = dict(resp.headers)
            headers["X-Test-Body"] = resp.text[:500]
            return StreamResult(resp.status_code, [], None, [], headers, True)
        for chunk in resp.iter_content(chunk_size=None):
            events.extend(parser.feed(chunk))
            if max_events is not None and len(events) >= max_events:
                return StreamResult(200, events[:max_events], parser.retry, parser.comments,
                                    dict(resp.headers), False)
        return StreamResult(200, events, parser.retry, parser.comments, dict(resp.headers), True)
