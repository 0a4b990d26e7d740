"""A finished generation is replayed from its log alone: no subscription, nothing lost.

A private Redis (its `INFO commandstats` counts only this stack) and no
worker: the test appends the events itself, more than one log page of them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from spool.connection import connect, take_round_trips
from spool.generations import Generations
from spool.keys import Keys
from spool.log import READ_PAGE, EventLog, Retention
from tests.conftest import Api
from tests.harness import RedisServer, Stack, running_stack

RETENTION = Retention(live_s=3600, final_s=3600, tombstone_s=7200)
DELTAS = READ_PAGE * 2 + 37  # three pages, the last one short


@pytest.fixture
def private_stack() -> Iterator[Stack]:
    server = RedisServer()
    server.start()
    try:
        with running_stack(server.url, {}, workers=0) as stack:
            yield stack
    finally:
        server.stop()


def subscribes(client: redis.Redis) -> int:
    """SUBSCRIBE commands this Redis has run so far."""
    stats = client.info("commandstats").get("cmdstat_subscribe", {})
    return int(stats.get("calls", 0))


def write_answer(log: EventLog, gen_id: str, end: bool = True) -> str:
    """Append DELTAS deltas (and `done`); returns the text."""
    pieces = [f"<{i}>" for i in range(DELTAS)]
    for piece in pieces:
        log.append(gen_id, "delta", {"text": piece})
    if end:
        log.append(gen_id, "done", {"finish_reason": "stop"})
    return "".join(pieces)


def test_a_finished_answer_streams_whole_without_subscribing(private_stack: Stack) -> None:
    api = Api(private_stack)
    client = redis.Redis.from_url(private_stack.redis_url, decode_responses=True)
    log = EventLog(client, Keys(private_stack.namespace), RETENTION)
    created = api.create("unused")
    text = write_answer(log, created["id"])
    before = subscribes(client)

    whole = api.stream(created)
    resumed = api.stream(created, headers={"Last-Event-ID": str(READ_PAGE + 3)})

    assert subscribes(client) == before
    assert whole.status == 200 and whole.complete
    total = DELTAS + 2  # event 1 (queued), the deltas, done
    assert [e.id for e in whole.events] == list(range(1, total + 1))
    assert [e.event for e in whole.events].count("done") == 1
    assert "".join(e.data["text"] for e in whole.events if e.event == "delta") == text
    assert [e.id for e in resumed.events] == list(range(READ_PAGE + 4, total + 1))
    assert api.stream(created, headers={"Last-Event-ID": str(total)}).status == 204


def test_an_unfinished_answer_is_followed_live(private_stack: Stack) -> None:
    """The control: a reader of a generation still running subscribes."""
    api = Api(private_stack)
    client = redis.Redis.from_url(private_stack.redis_url, decode_responses=True)
    log = EventLog(client, Keys(private_stack.namespace), RETENTION)
    created = api.create("unused")
    text = write_answer(log, created["id"], end=False)
    before = subscribes(client)
    partial = api.stream(created, max_events=DELTAS + 1)
    assert subscribes(client) > before
    assert "".join(e.data["text"] for e in partial.events if e.event == "delta") == text


def test_the_opening_reads_record_and_first_page_in_one_round_trip(
        private_stack: Stack) -> None:
    api = Api(private_stack)
    keys = Keys(private_stack.namespace)
    client = connect(private_stack.redis_url)
    log = EventLog(client, keys, RETENTION)
    created = api.create("unused")
    write_answer(log, created["id"])
    generations = Generations(client, keys, log)
    take_round_trips()
    record, page = generations.load_fields_and_page(created["id"], ("ended", "last_seq"),
                                                    after=5, limit=READ_PAGE)
    assert sum(take_round_trips().values()) == 1
    assert record is not None and record["ended"] == record["last_seq"] == str(DELTAS + 2)
    assert [entry.seq for entry in page] == list(range(6, 6 + READ_PAGE))
    missing, nothing = generations.load_fields_and_page("gen_" + "x" * 24, ("ended",), 0, 10)
    assert missing is None and nothing == []
    client.close()
