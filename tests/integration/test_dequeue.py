"""One-command dequeue (`worker.dequeue`): RQ's LMOVE step, many ids per call."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from rq import Queue

from spool.connection import connect_rq
from worker.dequeue import Dequeuer


@pytest.fixture
def queues(redis_server: Any) -> Iterator[tuple[Queue, Queue]]:
    client = connect_rq(redis_server.url)
    tag = secrets.token_hex(4)
    pair = (Queue(f"deq-{tag}-interactive", connection=client),
            Queue(f"deq-{tag}-batch", connection=client))
    yield pair
    for queue in pair:
        client.delete(queue.key, queue.intermediate_queue_key)
    client.close()


def fill(queue: Queue, *ids: str) -> None:
    queue.connection.rpush(queue.key, *ids)


def test_interactive_first_then_batch_within_both_limits(queues: tuple[Queue, Queue]) -> None:
    interactive, batch = queues
    fill(interactive, "i1", "i2")
    fill(batch, "b1", "b2", "b3", "b4")
    dequeuer = Dequeuer(interactive.connection, interactive, batch)
    found = dequeuer.pop(5, 2)
    assert found == [("i1", interactive), ("i2", interactive), ("b1", batch), ("b2", batch)]
    # RQ's own step: each id now waits in its queue's intermediate list, in order.
    client = interactive.connection
    assert client.lrange(interactive.intermediate_queue_key, 0, -1) == [b"i1", b"i2"]
    assert client.lrange(batch.intermediate_queue_key, 0, -1) == [b"b1", b"b2"]
    assert client.lrange(batch.key, 0, -1) == [b"b3", b"b4"]


def test_the_total_limit_holds_and_empty_queues_give_nothing(
        queues: tuple[Queue, Queue]) -> None:
    interactive, batch = queues
    fill(interactive, *(f"i{n}" for n in range(5)))
    fill(batch, "b1")
    dequeuer = Dequeuer(interactive.connection, interactive, batch)
    assert [job_id for job_id, _ in dequeuer.pop(3, 10)] == ["i0", "i1", "i2"]
    assert [job_id for job_id, _ in dequeuer.pop(10, 0)] == ["i3", "i4"]  # no batch share
    assert dequeuer.pop(10, -3) == []  # a negative share is none
    assert dequeuer.pop(10, 1) == [("b1", batch)]
    assert dequeuer.pop(10, 10) == []
    assert dequeuer.pop(0, 10) == []
