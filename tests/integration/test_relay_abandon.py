"""Readers known across processes, and `abandon_after_s` (issue 5, items 2)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import requests

from tests.conftest import Api, StackFactory
from tests.fakeprovider import FakeProvider, matching, scenario
from tests.harness import wait_until
from tests.sseclient import Parser, StreamResult

WORDS = "Abandoned answers cost money nobody recovers; watched ones must finish. "


def deltas(result: StreamResult) -> str:
    return "".join(e.data["text"] for e in result.events if e.event == "delta")


class HeldReader:
    """An SSE reader kept open in a thread until `close()`."""

    def __init__(self, url: str) -> None:
        self.events: list[Any] = []
        self._resp = requests.get(url, stream=True, timeout=60)
        assert self._resp.status_code == 200
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        parser = Parser()
        try:
            for chunk in self._resp.iter_content(chunk_size=None):
                self.events.extend(parser.feed(chunk))
        except (requests.RequestException, AttributeError, ValueError):
            pass  # closed under our feet by close()

    def close(self) -> None:
        self._resp.close()


def test_unwatched_generation_is_abandoned(make_stack: StackFactory) -> None:
    api = Api(make_stack())
    text = WORDS * 20  # ~90 s at 4 tokens/s: it can only end early by being abandoned
    created = api.create(text, mock={"tokens_per_second": 4, "ttft_ms": 0}, abandon_after_s=1)
    record = wait_until(lambda: (r := api.generation(created["id"]))["status"] == "cancelled"
                        and r, timeout=30, what="abandoned")
    assert record["finish_reason"] == "abandoned"
    assert record["readers"] == 0
    log = api.stream(created)
    assert log.status == 200
    assert log.events[-1].event == "cancelled"
    assert log.events[-1].data == {"reason": "abandoned"}
    assert [e.event for e in log.events].count("cancelled") == 1
    assert text.startswith(deltas(log)) and len(deltas(log)) < len(text)


def test_reader_back_within_window_loses_nothing(make_stack: StackFactory) -> None:
    api = Api(make_stack())
    text = WORDS * 6  # ~440 chars: ~110 tokens, ~5.5 s at 20 tokens/s
    created = api.create(text, mock={"tokens_per_second": 20, "ttft_ms": 0}, abandon_after_s=3)
    first = api.stream(created, max_events=4)  # attached briefly, then gone
    assert not first.complete
    time.sleep(1.0)  # away, but well inside the window
    rest = api.stream(created, headers={"Last-Event-ID": str(first.events[-1].id)})
    # Watched past the 3 s window after creation: pushing the deadline is what keeps it alive.
    assert rest.events[-1].event == "done", rest.events[-1]
    ids = [e.id for e in first.events + rest.events]
    assert ids == list(range(1, len(ids) + 1))
    assert deltas(first) + deltas(rest) == text
    assert api.generation(created["id"])["status"] == "completed"


def test_generation_without_abandon_is_never_abandoned(make_stack: StackFactory) -> None:
    api = Api(make_stack(env={"SPOOL_ABANDON_AFTER_S": ""}))
    created = api.create("x" * 40, mock={"tokens_per_second": 5, "ttft_ms": 0})
    wait_until(lambda: api.generation(created["id"])["status"] == "completed", timeout=30,
               what="completion")
    assert api.generation(created["id"])["finish_reason"] == "stop"


def test_readers_counted_across_web_processes(make_stack: StackFactory) -> None:
    stack = make_stack(webs=2)
    api0, api1 = Api(stack, web=0), Api(stack, web=1)
    created = api0.create(WORDS * 10, mock={"tokens_per_second": 5, "ttft_ms": 0})
    gen_id = created["id"]
    assert api0.generation(gen_id)["readers"] == 0
    readers = [HeldReader(api0.url(created["stream_url"])),
               HeldReader(api1.url(created["stream_url"])),
               HeldReader(api1.url(created["stream_url"]))]
    try:
        for api in (api0, api1):
            wait_until(lambda a=api: a.generation(gen_id)["readers"] == 3, timeout=15,  # type: ignore[misc]
                       what="3 readers seen from each process")
        readers[1].close()
        wait_until(lambda: api0.generation(gen_id)["readers"] == 2, timeout=15,
                   what="a closed reader to drop out of the count")
    finally:
        for reader in readers:
            reader.close()
        api0.post(f"/v1/generations/{gen_id}/cancel")
    wait_until(lambda: api1.generation(gen_id)["readers"] == 0, timeout=15,
               what="no readers once all are gone")


def test_abandon_closes_the_upstream_connection(make_stack: StackFactory) -> None:
    """Through the real `openai` adapter: abandoning stops paying the provider."""
    fake = FakeProvider()
    try:
        stack = make_stack(env={"OPENAI_BASE_URL": fake.openai_base_url,
                                "OPENAI_API_KEY": "sk-test"})
        api = Api(stack)
        key = uuid.uuid4().hex
        resp = api.post("/v1/generations", {
            "provider": "openai", "abandon_after_s": 1,
            "messages": [{"role": "user", "content": scenario(
                key=key, tokens=1000, tps=10, ttft_ms=0)}]})  # ~100 s if nobody stops it
        assert resp.status_code == 202, resp.text
        gen_id = resp.json()["id"]
        record = wait_until(lambda: (r := api.generation(gen_id))["status"] == "cancelled"
                            and r, timeout=30, what="abandoned")
        assert record["finish_reason"] == "abandoned"
        upstream = wait_until(lambda: [r for r in matching(fake.requests(), key)
                                       if r["client_disconnected"]], timeout=10,
                              what="the upstream request to be closed")
        assert len(upstream) == 1
    finally:
        fake.stop()
