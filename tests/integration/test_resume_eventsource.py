"""EventSource reconnects to the URL it was given plus `Last-Event-ID`.

A fetch-style client that opened `...&offset=C` and then handed the URL to
an `EventSource` (or an EventSource opened on such a URL by a page) comes
back with the original query *and* the header. The header wins: the stream
continues after that event with nothing repeated, and past the terminal
event the answer is 204 (the only status that stops EventSource for good).
"""

from __future__ import annotations

from typing import Any

from spool.utf16 import utf16_len
from tests.conftest import Api
from tests.sseclient import read_stream

TEXT = "Once upon a time 🙂 there was a stream that was cut and resumed, twice."


def _joined(events: list[Any]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "delta")


def test_header_wins_over_offset_on_reconnect(api: Api) -> None:
    created = api.create(TEXT, mock={"tokens_per_second": 40, "ttft_ms": 50})
    kept = "Once up"  # what the fetch client already had
    url = api.url(created["stream_url"]) + f"&offset={utf16_len(kept)}"
    early = read_stream(api.url(created["stream_url"]), max_events=4)  # status + 3 deltas
    assert _joined(early.events).startswith(kept)
    # First connection: the offset opening plus a few live events, then the line drops.
    first = read_stream(url, max_events=3)
    assert first.status == 200 and not first.complete
    got = kept + _joined(first.events)
    last_id = first.events[-1].id
    assert last_id is not None
    # EventSource's reconnect: same URL (offset included) + Last-Event-ID.
    second = read_stream(url, {"Last-Event-ID": str(last_id)})
    assert second.status == 200, second.headers.get("X-Test-Body")
    assert second.complete and second.events[-1].event == "done"
    assert all(e.id is not None and e.id > last_id for e in second.events)
    ids = [e.id for e in second.events]
    assert ids == list(range(last_id + 1, last_id + 1 + len(ids)))  # no gap, no repeat
    got += _joined(second.events)
    assert got == TEXT
    # A reconnect after the terminal event: 204, not 400, so EventSource stops.
    end = read_stream(url, {"Last-Event-ID": str(second.events[-1].id)})
    assert end.status == 204, end.headers.get("X-Test-Body")


def test_offset_alone_and_offset_with_after_unchanged(api: Api) -> None:
    created = api.create(TEXT)
    assert api.stream(created).events[-1].event == "done"
    url = api.url(created["stream_url"])
    tail = read_stream(url + f"&offset={utf16_len(TEXT) - 3}")
    assert tail.status == 200 and _joined(tail.events) == TEXT[-3:]
    assert tail.events[-1].event == "done"  # an offset client learns the finish reason
    mixed = read_stream(url + "&offset=1&after=1")
    assert mixed.status == 400
    # Header 0 with an offset URL: the header still wins (from the start, whole text).
    whole = read_stream(url + "&offset=5", {"Last-Event-ID": "0"})
    assert whole.status == 200 and _joined(whole.events) == TEXT
