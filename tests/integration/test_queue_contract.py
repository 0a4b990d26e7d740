"""The templated enqueue (spool/queue.py) against RQ's own, on a real Redis.

Admission replays RQ's enqueue commands inside its script; the web builds
them from a per-queue template instead of an rq Job per POST. If a change
in RQ (or in how Spool calls it) made the template differ from what RQ
itself would send, jobs would be malformed in ways no other test sees
until a worker meets one: these tests compare the two command by command
and then let RQ read what the template wrote.
"""

from __future__ import annotations

import re
import secrets
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from rq import Queue
from rq.job import Job

from spool.connection import connect_rq
from spool.ids import new_generation_id
from spool.keys import PRIORITIES, Keys
from spool.queue import JOB_FUNC, _recorded, enqueue_commands

JOB_TIMEOUT_S = 600
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture()
def rq_client(redis_server: Any) -> Iterator[Any]:
    client = connect_rq(redis_server.url)
    yield client
    client.close()


@pytest.fixture()
def keys() -> Keys:
    return Keys(namespace=f"qc{secrets.token_hex(4)}")


def _without_stamps(commands: tuple[tuple[Any, ...], ...]) -> list[tuple[Any, ...]]:
    """The commands with RQ's timestamps masked (they differ by construction) and
    the call data as plain bytes (RQ zlibs it; the template writes it plain, which
    RQ reads too: `test_templated_job_is_read_by_rq`)."""
    out = []
    for command in commands:
        out.append(tuple("<stamp>" if isinstance(arg, str) and STAMP.match(arg)
                         else _inflate(arg) for arg in command))
    return out


def _inflate(arg: Any) -> Any:
    if isinstance(arg, bytes):
        try:
            return ("<call data>", zlib.decompress(arg))
        except zlib.error:
            if arg.startswith(b"\x80"):  # a pickle (RQ's serializer), not compressed
                return ("<call data>", arg)
    return arg


@pytest.mark.parametrize("priority", PRIORITIES)
def test_template_matches_rqs_own_enqueue(rq_client: Any, keys: Keys, priority: str) -> None:
    for _ in range(3):  # the first call builds the template, later ones reuse it
        gen_id = new_generation_id()
        templated = enqueue_commands(rq_client, keys, gen_id, priority, JOB_TIMEOUT_S)
        own = _recorded(rq_client, keys, gen_id, priority, JOB_TIMEOUT_S)
        assert _without_stamps(templated) == _without_stamps(own)
        assert any(gen_id in str(arg) for command in templated for arg in command)


def test_template_stamps_are_fresh(rq_client: Any, keys: Keys) -> None:
    enqueue_commands(rq_client, keys, new_generation_id(), "interactive", JOB_TIMEOUT_S)
    time.sleep(0.01)  # the template (built above at the latest) is now in the past
    before = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    templated = enqueue_commands(rq_client, keys, new_generation_id(), "interactive",
                                 JOB_TIMEOUT_S)
    stamps = [arg for command in templated for arg in command
              if isinstance(arg, str) and STAMP.match(arg)]
    assert len(stamps) >= 2, "RQ's enqueue writes created_at and enqueued_at"
    assert min(stamps) >= before


def test_templated_job_is_read_by_rq(rq_client: Any, keys: Keys) -> None:
    gen_id = new_generation_id()
    pipe = rq_client.pipeline(transaction=True)
    for command in enqueue_commands(rq_client, keys, gen_id, "interactive", JOB_TIMEOUT_S):
        pipe.execute_command(*command)
    pipe.execute()

    queue = Queue(keys.queue_name("interactive"), connection=rq_client)
    assert queue.job_ids == [gen_id]
    job = Job.fetch(gen_id, connection=rq_client)
    assert job.func_name == JOB_FUNC
    assert job.args == (gen_id,)
    assert job.timeout == JOB_TIMEOUT_S
    assert job.get_status() == "queued"
    assert job.origin == keys.queue_name("interactive")
    assert job.enqueued_at is not None


def test_ids_of_another_length_take_rqs_path(rq_client: Any, keys: Keys) -> None:
    odd_id = "gen_short"
    commands = enqueue_commands(rq_client, keys, odd_id, "batch", JOB_TIMEOUT_S)
    assert _without_stamps(commands) == _without_stamps(
        _recorded(rq_client, keys, odd_id, "batch", JOB_TIMEOUT_S))
