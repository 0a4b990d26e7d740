"""Random disconnects: every reader resumes with zero lost or doubled characters.

Readers drop their connection after a random number of events and come back
with `Last-Event-ID`, `?after=` or (fetch-style) `?offset=`, while the
generations are still streaming.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from spool.utf16 import utf16_len
from tests.conftest import Api
from tests.sseclient import Event

PIECES = ["Hello", "世界", "🙂", "👩‍👩‍👧", "e\u0301", "\n", "naïve", "ß", "😀😃", "中文字符",
          " ", "—", "\r\n", "🏳️‍🌈", "क्षि", "\t", '"quoted"', "\\", "{json}"]
GENERATIONS = 12  # the writer may merge deltas under load: enough events for 100+ cuts
MIN_DISCONNECTS = 100


def random_text(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(PIECES) for _ in range(length))


@dataclass
class Reader:
    api: Api
    created: dict
    rng: random.Random
    events: list[Event] = field(default_factory=list)
    text_by_offset: str = ""
    disconnects: int = 0
    modes: list[str] = field(default_factory=list)

    def run(self) -> None:
        while not self.events or self.events[-1].event not in ("done", "error", "cancelled"):
            mode = self.rng.choice(["header", "after", "offset"])
            self.modes.append(mode)
            last = self.events[-1].id if self.events else 0
            if mode == "header":
                result = self.api.stream(self.created, headers={"Last-Event-ID": str(last)},
                                         max_events=self.rng.randint(1, 8))
            elif mode == "after":
                result = self.api.stream(self.created, query=f"&after={last}",
                                         max_events=self.rng.randint(1, 8))
            else:
                result = self.api.stream(
                    self.created, query=f"&offset={utf16_len(self.text_by_offset)}",
                    max_events=self.rng.randint(1, 8))
            assert result.status == 200, (mode, result.status, result.headers)
            assert result.retry == 1000
            if mode == "offset" and result.events:
                first = result.events[0]
                assert first.event == "delta"
                # The opening delta stands for everything up to its id.
                self.text_by_offset += first.data["text"]
                self.events = [e for e in self.events if e.id is not None and e.id < first.id]
                self.events.append(first)
                self._extend(result.events[1:], first.id)
            else:
                self._extend(result.events, last)
            if not result.complete:
                self.disconnects += 1

    def _extend(self, events: list[Event], last: int) -> None:
        for event in events:
            assert event.id == last + 1, f"expected id {last + 1}, got {event.id}"
            last = event.id
            self.events.append(event)
            if event.event == "delta":
                self.text_by_offset += event.data["text"]


def test_random_disconnects_lose_and_double_nothing(api: Api) -> None:
    rng = random.Random(20261121)
    readers = []
    for _ in range(GENERATIONS):
        text = random_text(rng, rng.randint(40, 90))
        created = api.create(text, mock={"tokens_per_second": 150, "ttft_ms": 50,
                                         "chunk": rng.choice(["token", "char"])})
        readers.append((text, Reader(api, created, random.Random(rng.random()))))
    threads = [threading.Thread(target=r.run) for _, r in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    total_disconnects = 0
    for expected, reader in readers:
        record = api.generation(reader.created["id"])
        assert record["status"] == "completed"
        assert record["text"] == expected
        assert reader.text_by_offset == expected
        header_events = [e for e in reader.events if e.event == "delta"]
        if "offset" not in reader.modes:
            assert "".join(e.data["text"] for e in header_events) == expected
            assert [e.id for e in reader.events] == list(range(1, record["last_event_id"] + 1))
        assert reader.events[-1].event == "done"
        total_disconnects += reader.disconnects
    assert total_disconnects >= MIN_DISCONNECTS, total_disconnects


def test_offset_never_splits_a_surrogate_pair(api: Api) -> None:
    created = api.create("a🙂b", mock={"tokens_per_second": 0, "ttft_ms": 0})
    api.stream(created)  # to the end
    result = api.stream(created, query="&offset=2")  # inside the emoji
    assert result.events[0].data == {"text": "🙂b"}
    assert result.events[-1].event == "done"
    at_end = api.stream(created, query="&offset=4")
    assert next((e.event, e.data) for e in at_end.events) == ("delta", {"text": ""})
    assert at_end.events[-1].event == "done"
    bad = api.get(created["stream_url"] + "&offset=5")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "offset"


def test_twenty_concurrent_readers_see_the_same_events(api: Api) -> None:
    text = random_text(random.Random(7), 120)
    created = api.create(text, mock={"tokens_per_second": 100, "ttft_ms": 300})
    results: list = [None] * 20

    def read(i: int) -> None:
        results[i] = api.stream(created)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    first = [(e.id, e.event, e.data) for e in results[0].events]
    assert first[-1][1] == "done"
    assert "".join(d["text"] for _, ev, d in first if ev == "delta") == text
    for result in results[1:]:
        assert [(e.id, e.event, e.data) for e in result.events] == first
